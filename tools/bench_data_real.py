"""Loader throughput at real sizes: 224 px JPEG image-text, 16-frame video, 10 s audio.

  python -m tools.bench_data --real [--seconds=8] [--workers=2] [--out=bench_real.json]
  python -m tools.bench_data --decoders

Writes three small datasets the way `tools.convert_data` does (encoded JPEGs of 320-640 px;
10 s videos as 8 fps JPEG frames with a 256 px short side; 10 s int16 audio at 16 kHz) into a
temporary folder, then runs the real train iterators with and without worker processes.
Reports examples/s (wall) and examples per CPU-second (the loader's threads and worker
processes together: what one host core delivers), bytes per example sent to the device now
(uint8 pixels, int16 audio) and before (float32), and the host cores a v5p-128 host needs to
feed `imp_base` (per-task step times from the README's dry-run MFU range).
"""

from __future__ import annotations

import io
import os
import tempfile
import time

import numpy as np
import psutil
import simplejpeg
from PIL import Image

from mmjax.data import pipeline, tfds_writer
from mmjax.data.convert import examples as convert_examples
from mmjax.core.tasks import Resolution, Task

# imp_base on a v5p-128 (16 hosts of 4 chips): per task, (global batch, step seconds with
# perfect overlap, with none) from README "Planning a pod run" (TFLOP/chip/step / (459 TFLOP/s
# x MFU)); AGD draws the four tasks equally often.
IMP_BASE = {'image_text': (8192, 19.6 / (459 * 1.00), 19.6 / (459 * 0.57)),
            'image': (2048, 4.5 / (459 * 0.93), 4.5 / (459 * 0.46)),
            'video': (2048, 4.8 / (459 * 0.86), 4.8 / (459 * 0.44)),
            'audio': (2048, 1.1 / (459 * 0.39), 1.1 / (459 * 0.25))}
HOSTS = 16


def _texture(rng, h: int, w: int, shift: int = 0) -> np.ndarray:
  """A smooth colour field plus fine noise: JPEG-compresses like a photo, not like noise."""
  small = rng.random((max(h // 16, 2), max(w // 16, 2), 3)) * 255
  field = np.asarray(Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.BICUBIC))
  field = np.roll(field, shift, axis=1).astype(np.float32)
  return np.clip(field + rng.normal(0, 8, field.shape), 0, 255).astype(np.uint8)


def _jpeg(pixels: np.ndarray) -> bytes:
  return simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=90, colorspace='RGB')


def _write(root: str, name: str, options, examples) -> None:
  features = convert_examples.features(options)
  folder = os.path.join(root, name, '1.0.0')
  os.makedirs(folder, exist_ok=True)
  records = [features.serialize_example(e) for e in examples]
  half = len(records) // 2
  for i, part in enumerate((records[:half], records[half:])):
    tfds_writer.write_shard(tfds_writer.shard_path(folder, name, 'train', i, 2), part)
  tfds_writer.write_metadata(folder, name, '1.0.0', features,
                             {'train': [half, len(records) - half]})


def make_datasets(root: str, seed: int = 0) -> None:
  rng = np.random.default_rng(seed)
  words = 'a photo of the small red dog cat on beach city street at night two people'.split()
  caption = lambda: ' '.join(rng.choice(words, 10))
  images = []
  for i in range(160):
    h, w = (int(v) for v in rng.integers(320, 641, 2))
    images.append({'image': _jpeg(_texture(rng, h, w)), 'captions': [caption()], 'key': str(i)})
  _write(root, 'bench_image', convert_examples.ExampleOptions('image'), images)
  videos = []
  for i in range(12):
    base = _texture(rng, 256, 340)
    frames = [_jpeg(np.roll(base, 3 * t, axis=1)) for t in range(80)]  # 10 s at 8 fps
    videos.append({'video': frames, 'captions': [caption()], 'key': str(i)})
  _write(root, 'bench_video', convert_examples.ExampleOptions('video'), videos)
  sounds = [{'audio': (rng.normal(0, 3000, 160_000)).astype(np.int16), 'captions': [caption()],
             'key': str(i)} for i in range(64)]
  _write(root, 'bench_audio', convert_examples.ExampleOptions('audio'), sounds)


def _config(root: str, tokenizer: str, workers: int):
  import ml_collections
  return ml_collections.ConfigDict({
      'data_dir': root, 'text': {'tokenizer': tokenizer, 'lowercase': True},
      'data': {'threads': 1, 'prefetch': 4, 'workers': workers, 'cache_mb': 0}})


CASES = {  # name: (dataset, modalities, batch, resolution)
    'image_text': ('bench_image', ('image', 'text'), 32,
                   Resolution(image_size=224, text_length=16)),
    'video': ('bench_video', ('video',), 8, Resolution(image_size=224, num_frames=16)),
    'audio': ('bench_audio', ('audio',), 32, Resolution(audio_samples=160_000)),
}


def _cpu_seconds() -> float:
  """CPU seconds so far of this process and its live worker processes (steady state only:
  a worker's start-up is before the first batch, outside the timed window)."""
  me = psutil.Process()
  total = 0.0
  for proc in [me] + me.children(recursive=True):
    try:
      times = proc.cpu_times()
      total += times.user + times.system
    except psutil.NoSuchProcess:
      pass
  return total


def measure(root: str, tokenizer: str, case: str, workers: int, seconds: float) -> dict:
  dataset, modalities, batch, res = CASES[case]
  task = Task(name=case, dataset=dataset, split='train', modalities=modalities,
              batch_size=batch, resolutions=(res,))
  it = pipeline.make_train_iterator(task, _config(root, tokenizer, workers), seed=0)
  first = next(it)                               # start-up (and worker spawn) excluded
  cpu0, t0, n = _cpu_seconds(), time.perf_counter(), 0
  while time.perf_counter() - t0 < seconds:
    next(it)
    n += batch
  wall = time.perf_counter() - t0
  cpu = _cpu_seconds() - cpu0
  it.close()
  now = sum(v.nbytes for v in first.values()) / batch
  before = sum(v.size * (4 if k in ('image', 'video', 'audio') else v.itemsize)
               for k, v in first.items()) / batch
  return {'case': case, 'workers': workers, 'examples_per_s': n / wall,
          'examples_per_cpu_s': n / max(cpu, 1e-9), 'bytes_now': now, 'bytes_before': before}


def host_cores(per_cpu_s: dict[str, float]) -> tuple[float, float]:
  """Cores one v5p-128 host needs for imp_base: examples it must make per second (each task's
  share of steps x its per-host batch / the mean step time) / examples per core-second; for
  the fastest (perfect overlap) and slowest (no overlap) step times."""
  rate = {'image_text': per_cpu_s['image_text'], 'image': per_cpu_s['image_text'],
          'video': per_cpu_s['video'], 'audio': per_cpu_s['audio']}
  core_s = sum(b / HOSTS / rate[t] for t, (b, _, _) in IMP_BASE.items()) / len(IMP_BASE)
  fast = np.mean([v[1] for v in IMP_BASE.values()])
  slow = np.mean([v[2] for v in IMP_BASE.values()])
  return core_s / fast, core_s / slow


def run(seconds: float = 8.0, workers: int = 2) -> dict:
  from mmjax.data import tokenizer as tokenizer_lib
  with tempfile.TemporaryDirectory() as root:
    start = time.perf_counter()
    make_datasets(root)
    tok = os.path.join(root, 'tokenizer.model')
    tokenizer_lib.train_sentencepiece(['a photo of the small red dog'] * 10, tok, 64)
    print(f'datasets written in {time.perf_counter() - start:.0f} s')
    rows = [measure(root, tok, case, w, seconds) for case in CASES for w in (0, workers)]
  for r in rows:
    print(f'{r["case"]:11} workers={r["workers"]}  {r["examples_per_s"]:7.1f} ex/s  '
          f'{r["examples_per_cpu_s"]:7.1f} ex/CPU-s  bytes/example to device '
          f'{r["bytes_now"]:,.0f} (was {r["bytes_before"]:,.0f})')
  best = {c: max(r['examples_per_cpu_s'] for r in rows if r['case'] == c) for c in CASES}
  fast, slow = host_cores(best)
  print(f'imp_base on v5p-128: {fast:.0f} host cores per host at the fastest step times '
        f'(perfect overlap), {slow:.0f} at the slowest (no overlap)')
  return {'rows': rows, 'host_cores_fast_steps': fast, 'host_cores_slow_steps': slow}


def _time(fn, n: int) -> float:
  """CPU milliseconds per call (all threads of this process): robust to a busy machine."""
  fn()
  start = time.process_time()
  for _ in range(n):
    fn()
  return (time.process_time() - start) / n * 1e3


def decoders() -> dict:
  """CPU ms per 500x375 JPEG decoded, cropped and resized to 224 (each candidate), per 10 s
  video decoded to 8 fps frames of 256 px height (PyAV vs OpenCV), per 10 s of 44.1 kHz audio
  resampled to 16 kHz (soxr vs scipy)."""
  import cv2
  import scipy.signal
  import soxr
  from mmjax.data import image_codec
  rng = np.random.default_rng(0)
  out = {}
  for h, w in ((375, 500), (768, 1024)):          # a typical web image, a large photo
    data = _jpeg(_texture(rng, h, w))
    box = (0.05 * h, 0.1 * w, 0.85 * h, 0.7 * w)   # top, left, height, width
    top, left, bh, bw = (int(v) for v in box)

    def pil():
      image = Image.open(io.BytesIO(data))
      image.draft('RGB', (int(224 * w / bw), int(224 * h / bh)))  # DCT-domain downscale
      s = image.size[0] / w
      return np.asarray(image.convert('RGB').resize(
          (224, 224), Image.BILINEAR, box=(left * s, top * s, (left + bw) * s, (top + bh) * s)))

    def opencv():
      image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
      image = image[top:top + bh, left:left + bw]
      return cv2.cvtColor(cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA),
                          cv2.COLOR_BGR2RGB)

    out[f'jpeg_{w}x{h}_pil_ms'] = _time(pil, 50)
    out[f'jpeg_{w}x{h}_opencv_ms'] = _time(opencv, 50)
    out[f'jpeg_{w}x{h}_simplejpeg_opencv_ms'] = _time(
        lambda: image_codec.decode_crop_resize(data, box, 224), 50)
  with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, 'clip.mp4')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 30, (320, 240))
    base = _texture(rng, 240, 320)
    for t in range(300):                          # 10 s at 30 fps
      writer.write(np.roll(base, 2 * t, axis=1))
    writer.release()

    def pyav_video():
      import av  # the candidate that lost: measured when installed, not a requirement
      with av.open(path) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format='rgb24', width=341, height=256)
                for i, f in enumerate(container.decode(stream)) if i % 4 == 0]

    def opencv_video():
      cap, frames, i = cv2.VideoCapture(path), [], 0
      while cap.grab():
        if i % 4 == 0:  # 30 -> ~8 fps
          frames.append(cv2.resize(cap.retrieve()[1], (341, 256)))
        i += 1
      return frames
    try:
      out['video_pyav_ms'] = _time(pyav_video, 3)
    except ImportError:
      pass
    out['video_opencv_ms'] = _time(opencv_video, 3)
  wave = rng.normal(0, 0.1, 441_000).astype(np.float32)
  out['audio_soxr_ms'] = _time(lambda: soxr.resample(wave, 44_100, 16_000, quality='HQ'), 5)
  out['audio_scipy_ms'] = _time(lambda: scipy.signal.resample_poly(wave, 160, 441), 5)
  for k, v in out.items():
    print(f'{k:28} {v:8.2f}')
  return out
