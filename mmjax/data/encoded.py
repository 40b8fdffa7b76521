"""Batch ops on encoded media columns: images as `bytes`, videos as arrays of per-frame `bytes`.

The crop is chosen from the image header first, then each image is decoded at the smallest
scale that still covers it (`image_codec.decode_crop_resize`) and resized to `[S, S, 3]` uint8.
A video decodes only the frames its clip uses, all with the clip's one crop. An example that
fails to decode is flagged in `bad [b]` (its output rows stay zero) instead of raising.
An image column may also mix encoded `bytes` with decoded `[H, W, C]` arrays (a split cached in
memory keeps the images it could not decode encoded): each is cropped and resized on its own
before the batch is stacked, so no batch is ever padded to its largest image.
"""

from __future__ import annotations

import numpy as np

from mmjax.data import image_codec
from mmjax.data.readers import is_encoded


def is_encoded_column(column: np.ndarray) -> bool:
  return column.dtype == object and len(column) > 0 and is_encoded(column[0])


def first_frames(column: np.ndarray) -> list[bytes]:
  """The encoded bytes that give each example's (height, width): the image or its first frame."""
  return [v if isinstance(v, bytes) else (bytes(v[0]) if len(v) else b'') for v in column]


def sizes(column: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-example (heights [b], widths [b]) from the headers (or the shapes of decoded images);
  unreadable or empty ones flag `bad` and get a 1x1 stand-in size."""
  hs, ws = np.ones(len(column), np.int64), np.ones(len(column), np.int64)
  for i, value in enumerate(column):
    if isinstance(value, np.ndarray) and value.dtype != object:  # decoded [H, W, C]
      if value.size:
        hs[i], ws[i] = value.shape[0], value.shape[1]
      else:
        bad[i] = True
      continue
    data = value if isinstance(value, bytes) else (bytes(value[0]) if len(value) else b'')
    try:
      hs[i], ws[i] = image_codec.image_size(data)
    except image_codec.CorruptImage:
      bad[i] = True
  return hs, ws


def decode_images(column: np.ndarray, boxes: np.ndarray, size: int, flip, hs, ws,
                  bad: np.ndarray) -> np.ndarray:
  """`[b]` images (encoded `bytes`, or decoded `[H, W, C]` uint8 arrays) -> `[b, size, size, 3]`
  uint8, each cropped to `boxes[i]` and resized on its own."""
  out = np.zeros((len(column), size, size, 3), np.uint8)
  for i, data in enumerate(column):
    if bad[i]:
      continue
    f = bool(flip[i]) if flip is not None else False
    try:
      if isinstance(data, np.ndarray) and data.dtype != object:
        out[i] = image_codec.crop_resize(data, boxes[i], size, f)
      else:
        out[i] = image_codec.decode_crop_resize(data, boxes[i], size, f,
                                                (int(hs[i]), int(ws[i])))
    except image_codec.CorruptImage:
      bad[i] = True
  return out


def decode_clips(column: np.ndarray, idx: np.ndarray, boxes: np.ndarray, size: int, flip, hs,
                 ws, bad: np.ndarray) -> np.ndarray:
  """`[b]` encoded videos and frame indices `idx [b, ..., T]` -> `[b, ..., T, size, size, 3]`
  uint8; every frame of example i uses `boxes[i]`."""
  out = np.zeros(idx.shape + (size, size, 3), np.uint8)
  for i, frames in enumerate(column):
    if bad[i]:
      continue
    f = bool(flip[i]) if flip is not None else False
    try:
      decoded = {}
      for pos in np.ndindex(idx.shape[1:]):
        k = int(idx[(i,) + pos])
        if k not in decoded:
          decoded[k] = image_codec.decode_crop_resize(bytes(frames[k]), boxes[i], size, f,
                                                      (int(hs[i]), int(ws[i])))
        out[(i,) + pos] = decoded[k]
    except image_codec.CorruptImage:
      bad[i] = True
  return out


def frame_counts(column: np.ndarray) -> np.ndarray:
  return np.array([1 if isinstance(v, bytes) else len(v) for v in column])

