"""Encoded images (JPEG, PNG, ...) -> uint8 RGB pixels, cropped and resized on the host.

JPEG goes through simplejpeg (libjpeg-turbo; it also decodes at 1/2, 1/4, 1/8 scale in the DCT
domain when the crop is small next to the target), everything else through OpenCV, and
resizing is OpenCV's `INTER_AREA` when shrinking (antialiased), `INTER_LINEAR` when growing.
These were the fastest of PIL, simplejpeg and OpenCV in `tools/bench_data.py --decoders`, and
both install from PyPI wheels on Linux, macOS and Windows. A damaged image raises
`CorruptImage`; the loader skips it (`batching.py`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import simplejpeg

cv2.setNumThreads(1)  # parallelism comes from the loader's threads and worker processes


class CorruptImage(ValueError):
  """An encoded image that cannot be decoded (truncated, damaged or of an unknown format)."""


def _is_jpeg(data: bytes) -> bool:
  return data[:3] == b'\xff\xd8\xff'


def image_size(data: bytes) -> tuple[int, int]:
  """(height, width) of an encoded image, from its header when it is a JPEG."""
  if _is_jpeg(data):
    try:
      h, w, _, _ = simplejpeg.decode_jpeg_header(data)
      return int(h), int(w)
    except ValueError as e:
      raise CorruptImage(str(e)) from e
  return decode(data).shape[:2]


def decode(data: bytes, min_height: int = 0, min_width: int = 0) -> np.ndarray:
  """`[H, W, 3]` uint8 RGB; a JPEG may come back downscaled by 2, 4 or 8 while staying at least
  `min_height` x `min_width`. Gray becomes 3 channels, alpha is dropped."""
  data = bytes(data)
  if _is_jpeg(data):
    try:
      if min_height or min_width:
        return simplejpeg.decode_jpeg(data, colorspace='RGB', min_height=int(min_height),
                                      min_width=int(min_width))
      return simplejpeg.decode_jpeg(data, colorspace='RGB')
    except ValueError as e:
      raise CorruptImage(f'JPEG: {e}') from e
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if image is None:
    raise CorruptImage('not a decodable image (truncated, damaged, or an unknown format)')
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def crop_resize(image: np.ndarray, box, size: int, flip: bool = False) -> np.ndarray:
  """`[H, W, C]` uint8 -> the `box` (top, left, height, width; pixels, may be fractional)
  resized to `[size, size, 3]` uint8, mirrored when `flip`."""
  top, left, h, w = box
  y0, x0 = max(int(math.floor(top)), 0), max(int(math.floor(left)), 0)
  y1 = min(max(int(math.ceil(top + h)), y0 + 1), image.shape[0])
  x1 = min(max(int(math.ceil(left + w)), x0 + 1), image.shape[1])
  crop = image[y0:y1, x0:x1]
  if crop.ndim == 2:
    crop = np.repeat(crop[..., None], 3, axis=-1)
  crop = crop[..., :3] if crop.shape[-1] >= 3 else np.repeat(crop[..., :1], 3, axis=-1)
  shrink = crop.shape[0] > size or crop.shape[1] > size
  out = cv2.resize(np.ascontiguousarray(crop), (size, size),
                   interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
  return out[:, ::-1] if flip else out


def decode_crop_resize(data: bytes, box, size: int, flip: bool = False,
                       full_size: tuple[int, int] | None = None) -> np.ndarray:
  """Decodes only as many pixels as the crop needs (JPEG scale 1/2..1/8), then `crop_resize`;
  `box` is in the full image's pixels (`full_size` = its (height, width), read when None)."""
  height, width = full_size or image_size(data)
  top, left, h, w = box
  need_h = math.ceil(height * size / max(h, 1e-6))
  need_w = math.ceil(width * size / max(w, 1e-6))
  image = decode(data, min(need_h, height), min(need_w, width))
  sy, sx = image.shape[0] / height, image.shape[1] / width
  return crop_resize(image, (top * sy, left * sx, h * sy, w * sx), size, flip)
