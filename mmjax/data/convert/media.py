"""Media decoding at conversion time: images checked, videos to JPEG frames, audio to int16.

Video: OpenCV's VideoCapture (its bundled FFmpeg), frames kept at `fps` (the first frame at or
after each 1/fps tick) and scaled so the short side is `size`, then JPEG-encoded (simplejpeg)
as TFDS stores video frames. In `tools/bench_data.py --decoders` it took 26 CPU-ms per 10 s
320x240 clip to PyAV's 65 (PyAV is faster in wall time only by using more threads), and it is
already the loader's image library. Audio: soundfile (libsndfile: wav, flac, ogg) and soxr
resampling (1.3 CPU-ms per 10 s of 44.1 kHz, scipy's resample_poly 4.8), mono, int16.
Anything that fails raises `MediaError` with the reason; the converter skips and reports it.
"""

from __future__ import annotations

import io
import os
import tempfile

import cv2
import numpy as np
import simplejpeg
import soundfile
import soxr

from mmjax.data import image_codec


class MediaError(ValueError):
  """A media file that cannot be decoded (its reason in the message)."""


def check_image(data: bytes) -> tuple[int, int]:
  """Decodes `data` fully (truncation and damage raise MediaError); returns (height, width)."""
  try:
    image = image_codec.decode(data)
  except image_codec.CorruptImage as e:
    raise MediaError(str(e)) from e
  return image.shape[:2]


def upright(data: bytes, quality: int = 95) -> bytes:
  """A JPEG whose EXIF orientation is not 1, decoded, turned upright and encoded again (quality
  `quality`); any other image as it is."""
  orientation = image_codec.exif_orientation(data)
  if orientation == 1:
    return data
  pixels = image_codec.orient(image_codec.decode(data), orientation)
  return simplejpeg.encode_jpeg(pixels, quality=quality, colorspace='RGB')


def _scaled(height: int, width: int, size: int) -> tuple[int, int]:
  """(height, width) with the short side `size` (never enlarged), even numbers for the codec."""
  scale = min(1.0, size / min(height, width))
  return max(2, int(round(height * scale / 2)) * 2), max(2, int(round(width * scale / 2)) * 2)


def video_frames(source, fps: float, size: int, max_frames: int = 0,
                 quality: int = 90) -> list[bytes]:
  """JPEG frames of a video (path or bytes) at `fps`, short side `size`; at most `max_frames`
  (0 = all)."""
  if isinstance(source, bytes):  # VideoCapture reads files: a tar member goes through one
    with tempfile.NamedTemporaryFile(suffix='.video') as f:
      f.write(source)
      f.flush()
      return video_frames(f.name, fps, size, max_frames, quality)
  capture = cv2.VideoCapture(os.fspath(source))
  if not capture.isOpened():
    raise MediaError('video: cannot be opened (damaged, or a codec FFmpeg lacks)')
  rate = capture.get(cv2.CAP_PROP_FPS) or 0.0
  frames, index, next_t = [], 0, 0.0
  try:
    while capture.grab():
      t = index / rate if rate > 0 else capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
      index += 1
      if t + 1e-6 < next_t:
        continue
      ok, bgr = capture.retrieve()
      if not ok:
        raise MediaError(f'video: frame {index - 1} cannot be decoded')
      h, w = _scaled(bgr.shape[0], bgr.shape[1], size)
      rgb = cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA),
                         cv2.COLOR_BGR2RGB)
      frames.append(simplejpeg.encode_jpeg(rgb, quality=quality, colorspace='RGB'))
      next_t += 1.0 / fps
      if max_frames and len(frames) >= max_frames:
        break
  finally:
    capture.release()
  if not frames:
    raise MediaError('video: no frames decoded')
  return frames


def audio_int16(source, rate: int, max_seconds: float = 0.0) -> np.ndarray:
  """Mono int16 samples of an audio file (path or bytes) resampled to `rate` (soxr, high
  quality), at most `max_seconds` (0 = all)."""
  data = io.BytesIO(source) if isinstance(source, bytes) else source
  try:
    wave, source_rate = soundfile.read(data, dtype='float32', always_2d=True)
  except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
    raise MediaError(f'audio: {e}') from e
  if not len(wave):
    raise MediaError('audio: no samples')
  mono = wave.mean(axis=1)
  if source_rate != rate:
    mono = soxr.resample(mono, source_rate, rate, quality='HQ')
  if max_seconds:
    mono = mono[:int(max_seconds * rate)]
  return np.clip(np.rint(mono * 32768.0), -32768, 32767).astype(np.int16)


_PLY_TYPES = {'char': 'i1', 'int8': 'i1', 'uchar': 'u1', 'uint8': 'u1', 'short': 'i2',
              'int16': 'i2', 'ushort': 'u2', 'uint16': 'u2', 'int': 'i4', 'int32': 'i4',
              'uint': 'u4', 'uint32': 'u4', 'float': 'f4', 'float32': 'f4', 'double': 'f8',
              'float64': 'f8'}


def _ply(data: bytes) -> np.ndarray:
  """The vertices of a PLY file (ascii or binary) as `[n, c]`: x, y, z (z absent: 2-D)."""
  end = data.find(b'end_header')
  if not data.startswith(b'ply') or end < 0:
    raise MediaError('not a PLY file (no "ply ... end_header" header)')
  header = data[:end].decode('ascii', 'replace').splitlines()
  body = data[data.index(b'\n', end) + 1:]
  fmt, count, props, in_vertex, before = '', 0, [], False, 0
  for line in header:
    words = line.split()
    if words[:1] == ['format']:
      fmt = words[1]
    elif words[:1] == ['element']:
      in_vertex = words[1] == 'vertex'
      if in_vertex:
        count = int(words[2])
      elif not props:
        before += 1  # an element before the vertices: not supported below
    elif words[:1] == ['property'] and in_vertex:
      if words[1] == 'list' or words[1] not in _PLY_TYPES:
        raise MediaError(f'PLY vertex property {" ".join(words[1:])!r} is not a plain number')
      props.append((words[2], _PLY_TYPES[words[1]]))
  names = [n for n, _ in props]
  if before or count <= 0 or 'x' not in names or 'y' not in names:
    raise MediaError('PLY file needs a first "element vertex" with x and y properties')
  if fmt == 'ascii':
    rows = np.loadtxt(io.StringIO(body.decode('ascii', 'replace')), dtype=np.float64,
                      max_rows=count, ndmin=2)
    table = {n: rows[:, i] for i, n in enumerate(names)}
  elif fmt in ('binary_little_endian', 'binary_big_endian'):
    order = '<' if fmt == 'binary_little_endian' else '>'
    dtype = np.dtype([(n, order + t) for n, t in props])
    if len(body) < dtype.itemsize * count:
      raise MediaError(f'PLY file is truncated ({count} vertices announced)')
    rows = np.frombuffer(body, dtype, count)
    table = {n: rows[n] for n in names}
  else:
    raise MediaError(f'PLY format {fmt!r} is not ascii or binary')
  return np.stack([table[n] for n in ('x', 'y', 'z') if n in table], axis=1)


def _csv(data: bytes) -> np.ndarray:
  """Numbers of a CSV/TSV file `[n, c]` (a header line of names is skipped)."""
  lines = [ln for ln in data.decode('utf-8-sig', 'replace').splitlines() if ln.strip()]
  sep = next((s for s in ('\t', ';', ',') if s in (lines[0] if lines else '')), None)
  split = (lambda ln: ln.split(sep)) if sep else str.split
  try:
    float(split(lines[0])[0])
  except (ValueError, IndexError):
    lines = lines[1:]  # a header
  try:
    return np.asarray([[float(v) for v in split(ln)] for ln in lines], np.float64)
  except ValueError as e:
    raise MediaError(f'CSV holds a value that is not a number ({e})') from None


def read_array(source, ext: str) -> np.ndarray:
  """A `.npy`/`.ply`/`.csv` file (bytes or a path) -> finite float64 rows `[n, c]`; raises
  MediaError."""
  if not isinstance(source, bytes):
    with open(source, 'rb') as f:
      source = f.read()
  ext = ext.lower().lstrip('.')
  try:
    if ext == 'npy':
      x = np.load(io.BytesIO(source), allow_pickle=False)
    elif ext == 'ply':
      x = _ply(source)
    elif ext in ('csv', 'tsv', 'txt'):
      x = _csv(source)
    else:
      raise MediaError(f'.{ext} is not .npy, .ply or .csv')
  except (ValueError, OSError, EOFError) as e:
    raise MediaError(f'cannot read the .{ext} file ({e})') from None
  x = np.asarray(x)
  if x.dtype.kind not in 'iuf':
    raise MediaError(f'the .{ext} file holds {x.dtype} values, not numbers')
  x = x.astype(np.float64)
  if x.ndim == 1:
    x = x[:, None]
  if x.ndim != 2 or len(x) == 0:
    raise MediaError(f'the .{ext} file holds an array of shape {list(x.shape)}; give rows of '
                     'numbers [n, columns]')
  if not np.isfinite(x).all():
    raise MediaError(f'the .{ext} file holds NaN or infinite values')
  return x


def array_rows(source, ext: str, columns: int) -> np.ndarray:
  """`read_array` as float32 `[n, columns]`: extra columns are dropped, missing ones zero (a
  2-D point set gets z = 0)."""
  x = read_array(source, ext)
  out = np.zeros((len(x), columns), np.float32)
  out[:, :min(columns, x.shape[1])] = x[:, :columns]
  return out
