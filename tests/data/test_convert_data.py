"""`python -m tools.convert_data`: WebDataset shards with a truncated JPEG, a CSV table, video and
audio files -> a dataset that tasks name, checked against the inputs the test wrote."""

import io
import json
import os
import subprocess
import sys
import tarfile

import cv2
import numpy as np
import pytest
import soundfile
from PIL import Image

from mmjax.data import sources
from mmjax_testing import xla_flags
from tools import convert_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def jpeg(seed: int, size=(40, 56)) -> bytes:
  pixels = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, 'JPEG', quality=90)
  return buffer.getvalue()


def write_tar(path, members: dict[str, bytes]) -> None:
  with tarfile.open(path, 'w') as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope='module')
def shards(tmp_path_factory):
  """Two img2dataset-style shards: 6 examples, captions from .txt and/or .json; key 000004's
  JPEG is cut in half and 000005 has no caption."""
  folder = tmp_path_factory.mktemp('wds')
  want = {}
  for shard in range(2):
    members = {}
    for j in range(3):
      key = f'{shard * 3 + j:06d}'
      image = jpeg(int(key))
      captions = [f'photo number {key}']
      members[f'{key}.jpg'] = image[:len(image) // 2] if key == '000004' else image
      if key != '000005':
        members[f'{key}.txt'] = captions[0].encode()
      if j == 1:  # a second caption in the json
        captions.append(f'another view of {key}')
        members[f'{key}.json'] = json.dumps({'captions': captions[1:]}).encode()
      if key not in ('000004', '000005'):
        want[key] = (image, captions)
    write_tar(folder / f'shard-{shard:05d}.tar', members)
  return folder, want


def convert(*args) -> int:
  return convert_data.main(list(args))


def test_webdataset_keeps_bytes_and_captions_and_reports_the_truncated_image(shards, tmp_path):
  folder, want = shards
  out = tmp_path / 'data'
  args = ('webdataset', f'--input={folder}/shard-{{00000..00001}}.tar', f'--output={out}',
          '--name=my_pairs', '--workers=2', '--vocab_size=64')
  assert convert(*args) == 0
  report = json.loads((out / 'my_pairs/1.0.0/conversion_report.json').read_text())['train']
  assert report['examples'] == 4 and report['skipped'] == 2
  skipped = {s['key']: s['reason'] for s in report['skipped_examples']}
  assert set(skipped) == {'000004', '000005'} and 'JPEG' in skipped['000004']
  source = sources.open_source('my_pairs', 'train', str(out))
  assert source.tokenizer_path and len(source) == 4
  got = source.read(range(4), ['key', 'image', 'captions'])
  for key, image, captions in zip(got['key'], got['image'], got['captions']):
    assert image == want[key][0] and list(captions) == want[key][1]
  shard = out / 'my_pairs/1.0.0/my_pairs-train.array_record-00000-of-00002'
  stamp = shard.stat().st_mtime_ns
  assert convert(*args) == 0                       # resumed: finished shards are kept
  assert shard.stat().st_mtime_ns == stamp


def test_pipe_shards_are_the_bytes_of_the_files_and_a_failing_command_is_reported(shards,
                                                                                  tmp_path):
  """`pipe:CMD` shards (one command per brace value) give the same dataset, byte for byte, as
  the files; a command exiting non-zero is a reported skip naming its status and stderr."""
  folder, _ = shards
  common = ('--name=p', '--workers=1', '--vocab_size=64')
  assert convert('webdataset', f'--input={folder}/shard-{{00000..00001}}.tar',
                 f'--output={tmp_path}/files', *common) == 0
  assert convert('webdataset', f"--input=pipe:cat '{folder}'/shard-{{00000..00001}}.tar",
                 f'--output={tmp_path}/pipe', *common) == 0
  files, piped = tmp_path / 'files/p/1.0.0', tmp_path / 'pipe/p/1.0.0'
  for name in ('p-train.array_record-00000-of-00002', 'p-train.array_record-00001-of-00002',
               'tokenizer.model'):
    assert (files / name).read_bytes() == (piped / name).read_bytes(), name
  # shard 0 whole then a failure; shard 1 cut after 1500 bytes (in its first member)
  failing = (f"pipe:cat '{folder}/shard-00000.tar'; echo 'connection reset' >&2; exit 3",
             f"pipe:head -c 1500 '{folder}/shard-00001.tar'; echo 'timed out' >&2; exit 28")
  got = {}
  for i, command in enumerate(failing):
    assert convert('webdataset', f'--input={command}', f'--output={tmp_path}/f{i}', *common) \
        == (0 if i == 0 else 2)
  report = json.loads((tmp_path / 'f0/p/1.0.0/conversion_report.json').read_text())['train']
  assert report['examples'] == 3                       # the tar it wrote before failing
  assert report['skipped_examples'] == [{'key': 'shard-00000.tar:<end>', 'reason': (
      f"`cat '{folder}/shard-00000.tar'; echo 'connection reset' >&2; exit 3` exited with "
      "status 3 (connection reset); run it in a shell to check it writes the tar to stdout")}]
  assert not (tmp_path / 'f1/p').exists()              # no example: exit 2, nothing kept


def test_a_pipe_command_not_on_path_is_refused_before_writing(tmp_path, capsys):
  assert convert('webdataset', '--input=pipe:no-such-fetcher https://h/s-{0..3}.tar',
                 f'--output={tmp_path}/out', '--name=x') == 2
  assert ("--input: 'pipe:no-such-fetcher https://h/s-0.tar' runs 'no-such-fetcher', which is "
          'not on PATH; a pipe: input is a shell command' in capsys.readouterr().err)
  assert not (tmp_path / 'out').exists()


def test_bad_input_is_one_sentence_and_writes_nothing(tmp_path, capsys):
  out = tmp_path / 'data'
  assert convert('webdataset', f'--input={tmp_path}/none-{{0..3}}.tar', f'--output={out}',
                 '--name=x') == 2
  assert 'matches no tar file' in capsys.readouterr().err and not out.exists()
  assert convert('csv', f'--input={tmp_path}/t.csv', f'--output={out}', '--name=x') == 2
  assert not out.exists()


def test_csv_table_with_labels_and_a_missing_file(tmp_path):
  images = tmp_path / 'images'
  images.mkdir()
  for i in range(3):
    (images / f'{i}.jpg').write_bytes(jpeg(100 + i))
  table = tmp_path / 'pairs.csv'
  table.write_text('path,caption,label\n0.jpg,a cat,cat\n1.jpg,a dog,dog\n'
                   '9.jpg,gone,dog\n2.jpg,"a cat, again",cat\n')
  out = tmp_path / 'data'
  assert convert('csv', f'--input={table}', f'--image_root={images}', f'--output={out}',
                 '--name=pets', '--rows_per_shard=2', '--workers=1', '--vocab_size=40') == 0
  source = sources.open_source('pets', 'train', str(out))
  assert source.features['label'].class_names == ('cat', 'dog')
  got = source.read(range(3), ['key', 'label', 'captions', 'image'])
  assert list(got['key']) == ['0.jpg', '1.jpg', '2.jpg'] and got['label'].tolist() == [0, 1, 0]
  assert [list(c) for c in got['captions']] == [['a cat'], ['a dog'], ['a cat, again']]
  assert got['image'][2] == (images / '2.jpg').read_bytes()
  report = json.loads((out / 'pets/1.0.0/conversion_report.json').read_text())['train']
  assert [s['key'] for s in report['skipped_examples']] == ['9.jpg']


def test_video_frames_at_fps_and_audio_at_the_rate(tmp_path):
  media = tmp_path / 'media'
  media.mkdir()
  writer = cv2.VideoWriter(str(media / 'clip.mp4'), cv2.VideoWriter_fourcc(*'mp4v'), 25,
                           (96, 64))                    # 2 s at 25 fps, 96x64
  for t in range(50):
    writer.write(np.full((64, 96, 3), 5 * t, np.uint8))
  writer.release()
  tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(22050 * 2) / 22050)).astype(np.float32)
  soundfile.write(media / 'tone.flac', tone, 22050)
  (tmp_path / 'v.csv').write_text('video,caption\nclip.mp4,a fade\n')
  (tmp_path / 'a.csv').write_text('audio,caption\ntone.flac,a tone\n')
  out = tmp_path / 'data'
  assert convert('csv', '--modality=video', f'--input={tmp_path}/v.csv', f'--image_root={media}',
                 f'--output={out}', '--name=clips', '--fps=5', '--frame_size=32',
                 '--vocab_size=20', '--workers=1') == 0
  assert convert('csv', '--modality=audio', f'--input={tmp_path}/a.csv', f'--image_root={media}',
                 f'--output={out}', '--name=tones', '--sample_rate=16000', '--vocab_size=20',
                 '--workers=1') == 0
  frames = sources.open_source('clips', 'train', str(out)).read([0], ['video'])['video'][0]
  assert len(frames) == 10                              # 2 s at 5 fps
  first = np.asarray(Image.open(io.BytesIO(bytes(frames[0]))))
  assert first.shape == (32, 48, 3)                     # short side 32, aspect kept
  audio = sources.open_source('tones', 'train', str(out)).read([0], ['audio'])['audio'][0]
  assert audio.dtype == np.int16 and len(audio) == 32000
  spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
  assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 2  # still a 440 Hz tone


CONFIG = '''"""python -m mmjax.train --config=THIS: one image-text task."""
from mmjax.config.defaults import base_config, task


def get_config(arg=None):
  c = base_config()
  c.total_steps, c.log_every, c.checkpoint_every = 3, 1, 3
  c.model.update(num_layers=1, embed_dim=32, patch_size=8, max_grid=4, max_text_length=8,
                 vocab_size=512)
  c.data.threads = 1
  c.tasks.image_text = task('mmjax_digits', 'image,text', 4, contrast='image-text',
                            image_size=32, text_length=8)
  return c
'''


@pytest.mark.slow
def test_converted_shards_train_a_few_steps(shards, tmp_path):
  folder, _ = shards
  out = tmp_path / 'data'
  assert convert('webdataset', f'--input={folder}/shard-*.tar', f'--output={out}',
                 '--name=my_pairs', '--workers=1', '--vocab_size=64') == 0
  config = tmp_path / 'config.py'
  config.write_text(CONFIG)
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
             XLA_FLAGS=xla_flags(1))
  proc = subprocess.run(
      [sys.executable, '-m', 'mmjax.train', f'--config={config}', f'--workdir={tmp_path}/run',
       f'--config.data_dir={out}', '--config.tasks.image_text.dataset=my_pairs'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rows = [json.loads(l) for l in (tmp_path / 'run/metrics.jsonl').read_text().splitlines()]
  rows = [r for r in rows if 'loss' in r]  # training rows (the run's last row is its goodput)
  assert [r['step'] for r in rows] == [1, 2, 3] and all(np.isfinite(r['loss']) for r in rows)


def test_a_tokenizer_larger_than_the_model_vocabulary_is_refused(shards, tmp_path):
  from mmjax.config.defaults import base_config, task
  from mmjax.data import pipeline
  from mmjax.data.errors import DataError
  from mmjax.core.tasks import task_from_config
  folder, _ = shards
  out = tmp_path / 'data'
  assert convert('webdataset', f'--input={folder}/shard-*.tar', f'--output={out}',
                 '--name=my_pairs', '--workers=1', '--vocab_size=300') == 0
  c = base_config()
  c.data_dir, c.model.vocab_size = str(out), 64
  c.tasks.t = task('my_pairs', 'image,text', 4, contrast='image-text', image_size=32,
                   text_length=8)
  with pytest.raises(DataError, match='config.model.vocab_size is 64; set it to at least'):
    pipeline.validate_task(task_from_config('t', c.tasks.t), c)
