"""Encoded images (JPEG, PNG, ...) -> uint8 RGB pixels, cropped and resized on the host.

JPEG goes through simplejpeg (libjpeg-turbo; it also decodes at 1/2, 1/4, 1/8 scale in the DCT
domain when the crop is small next to the target), everything else through OpenCV, and
resizing is OpenCV's `INTER_AREA` when shrinking (antialiased), `INTER_LINEAR` when growing.
These were the fastest of PIL, simplejpeg and OpenCV in `tools/bench_data.py --decoders`, and
both install from PyPI wheels on Linux, macOS and Windows. An undecodable input raises
`CorruptImage` whose message names the kind (`failure`): a zero-byte file, a truncated or damaged
image, a file that is not an image, an image codec this decoder lacks (HEIC, AVIF, JPEG XL, ...);
the converter reports it and the loader replaces and counts it (`batching.py`). A JPEG's EXIF
orientation is applied on request (`orient`, the converter's `--exif_orientation`). A PNG's
colour profile (iCCP chunk) is dropped before OpenCV decodes it (`without_icc_profile`): OpenCV
does not apply it, and libpng prints warnings for many profiles in circulation ("iCCP: known
incorrect sRGB profile") from C, where no Python filter reaches; other libpng warnings still show.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import simplejpeg
from PIL import Image

cv2.setNumThreads(1)  # parallelism comes from the loader's threads and worker processes


class CorruptImage(ValueError):
  """An encoded image that cannot be decoded (truncated, damaged or of an unknown format)."""


def _is_jpeg(data: bytes) -> bool:
  return data[:3] == b'\xff\xd8\xff'


# Magic bytes of image formats: the ones OpenCV reads, and others this decoder lacks.
_READ = {b'\x89PNG\r\n\x1a\n': 'PNG', b'GIF8': 'GIF', b'BM': 'BMP', b'II*\x00': 'TIFF',
         b'MM\x00*': 'TIFF'}
_OTHER_BRANDS = {b'heic': 'HEIC', b'heix': 'HEIC', b'mif1': 'HEIF', b'msf1': 'HEIF',
                 b'avif': 'AVIF', b'avis': 'AVIF'}


def sniff(data: bytes) -> str:
  """The image format named by `data`'s magic bytes ('' when none is recognised)."""
  if _is_jpeg(data):
    return 'JPEG'
  if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
    return 'WebP'
  if data[4:8] == b'ftyp':
    return _OTHER_BRANDS.get(data[8:12], 'ISO media (' + data[8:12].decode('latin-1') + ')')
  if data[:2] == b'\xff\x0a' or data[:12] == b'\x00\x00\x00\x0cJXL \r\n\x87\n':
    return 'JPEG XL'
  return next((name for magic, name in _READ.items() if data.startswith(magic)), '')


def failure(data: bytes, detail: str = '') -> str:
  """Why `data` does not decode, in words: zero-byte, not an image, unknown codec, or damaged."""
  if not len(data):
    return 'zero-byte file'
  kind = sniff(data)
  if not kind:
    head = bytes(data[:12]).decode('latin-1').encode('unicode_escape').decode()
    return f'not an image (no image header; starts with "{head}")'
  if kind in ('HEIC', 'HEIF', 'AVIF', 'JPEG XL') or kind.startswith('ISO media'):
    return f'unknown codec: {kind}, which the decoder cannot read (convert it to JPEG or PNG)'
  return f'truncated or damaged {kind}' + (f': {detail}' if detail else '')


def image_size(data: bytes) -> tuple[int, int]:
  """(height, width) of an encoded image, from its header (JPEG via libjpeg-turbo, other formats
  via PIL's lazy open); raises CorruptImage when the header cannot be read."""
  data = bytes(data)
  if _is_jpeg(data):
    try:
      h, w, _, _ = simplejpeg.decode_jpeg_header(data)
      return int(h), int(w)
    except ValueError as e:
      raise CorruptImage(failure(data, str(e))) from e
  if sniff(data) in ('PNG', 'GIF', 'BMP', 'WebP'):
    try:
      with Image.open(io.BytesIO(data)) as image:
        w, h = image.size
      return int(h), int(w)
    except Exception:  # noqa: BLE001 - PIL raises many types: fall back to a full decode
      pass
  return decode(data).shape[:2]


def exif_orientation(data: bytes) -> int:
  """The EXIF orientation tag (1..8) of a JPEG, 1 when it has none."""
  if not _is_jpeg(data):
    return 1
  try:
    with Image.open(io.BytesIO(data)) as image:
      value = image.getexif().get(0x0112, 1)
    return int(value) if 1 <= int(value) <= 8 else 1
  except Exception:  # noqa: BLE001 - an unreadable EXIF block means no orientation
    return 1


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
  """`[H, W, C]` as a viewer shows it for EXIF `orientation` (1 = as stored)."""
  if orientation in (5, 6, 7, 8):
    image = np.swapaxes(image, 0, 1)                   # transpose
    image = {5: image, 6: image[:, ::-1], 7: image[::-1, ::-1], 8: image[::-1]}[orientation]
  else:
    image = {1: image, 2: image[:, ::-1], 3: image[::-1, ::-1], 4: image[::-1]}[orientation]
  return np.ascontiguousarray(image)


def without_icc_profile(data: bytes) -> bytes:
  """`data` without the iCCP chunks of a PNG (the same pixels for OpenCV, which ignores colour
  profiles); any other input, or a PNG without one, as it is. Only the chunk headers before the
  image data are read (iCCP must come before IDAT)."""
  if not data.startswith(b'\x89PNG\r\n\x1a\n'):
    return data
  pos, cuts = 8, []
  while pos + 8 <= len(data):
    kind, end = data[pos + 4:pos + 8], pos + 12 + int.from_bytes(data[pos:pos + 4], 'big')
    if kind in (b'IDAT', b'IEND') or end > len(data):
      break
    if kind == b'iCCP':
      cuts.append((pos, end))
    pos = end
  if not cuts:
    return data
  keep, start = [], 0
  for a, b in cuts:
    keep.append(data[start:a])
    start = b
  return b''.join(keep + [data[start:]])


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
      raise CorruptImage(failure(data, str(e))) from e
  image = None
  if len(data):  # OpenCV asserts on an empty buffer instead of returning None
    try:
      # IGNORE_ORIENTATION: stored pixels, as simplejpeg gives them; 16-bit becomes 8-bit
      image = cv2.imdecode(np.frombuffer(without_icc_profile(data), np.uint8),
                           cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
      image = None
  if image is None:
    raise CorruptImage(failure(data))
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
