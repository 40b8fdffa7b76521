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
