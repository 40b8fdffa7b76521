"""A published model's own evaluation resize (`config.data.eval_resize`): `bicubic` or
`bilinear` resizes the shorter side to the input size with that PIL filter (antialiased when
shrinking, as torchvision's `Resize` on PIL images), then takes the centre `size x size` crop
(torchvision's `CenterCrop` rounding), as CLIP and open_clip evaluate; `squash_bicubic` /
`squash_bilinear` resize both sides to the size (transformers' SigLIP processor). mmjax's own
eval path (`''`) crops the central square and resamples it with an antialiased triangle filter.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mmjax.data import encoded, image_codec
from mmjax.data.errors import DataError

FILTERS = {'bicubic': Image.BICUBIC, 'bilinear': Image.BILINEAR}


RECIPES = ('',) + tuple(FILTERS) + tuple(f'squash_{f}' for f in FILTERS)


def check(name: str) -> str:
  if name not in RECIPES:
    raise DataError(f'config.data.eval_resize must be one of {RECIPES}, got {name!r}.')
  return name


def resize_center_crop(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
  """`[H, W, C]` uint8 (gray or RGBA too) -> `[size, size, 3]` uint8 by the recipe
  `interpolation` names (module doc)."""
  if image.ndim == 2:
    image = image[..., None]
  image = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)
  h, w = image.shape[:2]
  pil = Image.fromarray(np.ascontiguousarray(image, np.uint8))
  if interpolation.startswith('squash_'):
    return np.asarray(pil.resize((size, size), FILTERS[interpolation[len('squash_'):]]))
  if h <= w:
    nh, nw = size, int(size * w / h)
  else:
    nh, nw = int(size * h / w), size
  if (nh, nw) != (h, w):
    pil = pil.resize((nw, nh), FILTERS[interpolation])
  out = np.asarray(pil)
  top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
  return out[top:top + size, left:left + size]


def resize_column(column: np.ndarray, size: int, interpolation: str,
                  bad: np.ndarray) -> np.ndarray:
  """A column of images (encoded bytes or arrays) -> `[n, size, size, 3]` uint8; an image that
  fails to decode is flagged in `bad` and left black."""
  out = np.zeros((len(column), size, size, 3), np.uint8)
  is_encoded = encoded.is_encoded_column(column)
  for i, value in enumerate(column):
    try:
      image = image_codec.decode(bytes(value)) if is_encoded else np.asarray(value)
      if image.dtype != np.uint8:
        image = np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)
      out[i] = resize_center_crop(image, size, interpolation)
    except image_codec.CorruptImage:
      bad[i] = True
  return out
