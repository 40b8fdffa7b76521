"""Reinforced datasets (MobileCLIP): stored teacher embeddings and stored augmentations.

`python -m tools.reinforce_data` writes a copy of a dataset with extra features per example:

  `aug_crop`        float32 `[K, 4]`  K crop boxes (top, left, height, width) in source pixels
  `aug_flip`        uint8   `[K]`     whether augmentation k mirrors the crop
  `teacher_image`   float32 `[K, D]`  the teachers' image embedding of augmentation k (averaged
                                      over the ensemble, L2-normalised)
  `teacher_text`    float32 `[1, D]`  the teachers' embedding of the example's text (its first
                                      caption when it has several)

A reinforced task (`Task.reinforced`) replays them: the loader draws one stored augmentation k
per example instead of a fresh crop, and the batch carries `teacher_<m> [b, D]` for that k.
"""

from __future__ import annotations

import numpy as np

from mmjax.data import encoded, transforms as T
from mmjax.data.errors import DataError

CROP, FLIP = 'aug_crop', 'aug_flip'
MODALITIES = ('image', 'text')  # what the teachers embed and the loader replays


def teacher_key(modality: str) -> str:
  return f'teacher_{modality}'


def command(dataset: str) -> str:
  return (f'python -m tools.reinforce_data --teacher=EXPORT --dataset={dataset} '
          '--output=DATA_DIR')


def check_features(features: dict, modalities, dataset: str, who: str, dim: int) -> None:
  """Raises DataError (one sentence, naming the reinforce command) unless the dataset's
  `features` carry the stored augmentations and `[., dim]` teacher embeddings of `modalities`."""
  need = [CROP, FLIP] + [teacher_key(m) for m in modalities if m in MODALITIES]
  missing = [n for n in need if n not in features]
  if missing:
    raise DataError(f'{who} is reinforced (stored teacher embeddings and augmentations) but '
                    f'dataset {dataset!r} has no {missing[0]!r} feature: write a reinforced copy '
                    f'with `{command(dataset)}` and train on that.')
  for m in modalities:
    if m in MODALITIES:
      shape = tuple(features[teacher_key(m)].shape)
      if shape[-1] != dim:
        raise DataError(f'{who} sets teacher_dim={dim} but dataset {dataset!r} stores '
                        f'{shape[-1]}-dimensional {teacher_key(m)}: set teacher_dim={shape[-1]}.')


# Decoded images of the same size up to this many pixels are resized together as one batched
# matmul; larger or ragged ones one by one (OpenCV), so a batch is never padded or held in float.
BATCHED_PIXELS = 512 * 512


def image_sizes(column: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Heights and widths `[n]` of an image column (encoded or decoded, ragged or not)."""
  if column.dtype == object:
    return encoded.sizes(column, bad)
  return (np.full(len(column), column.shape[-3]), np.full(len(column), column.shape[-2]))


def crop_images(column: np.ndarray, boxes: np.ndarray, size: int, flip, bad: np.ndarray,
                sizes: tuple[np.ndarray, np.ndarray] | None = None):
  """`column` (n images) cropped at `boxes [n, 4]`, resized to `[n, size, size, 3]` uint8 and
  mirrored where `flip [n]` (None: none); an image that fails to decode is flagged in `bad`.
  `sizes`: the column's `image_sizes`, when the caller has them already."""
  if column.dtype != object and column.shape[-3] * column.shape[-2] <= BATCHED_PIXELS:
    return T.crop_resize(column, boxes, size, flip)
  hs, ws = sizes if sizes is not None else image_sizes(column, bad)
  return encoded.decode_images(column, boxes, size, flip, hs, ws, bad)


def draw_augmentations(rng: np.random.Generator, heights, widths, k: int,
                       crop_scale=(0.7, 1.0), flip: bool = False):
  """K random-resized-crop boxes per image -> crops `[n, K, 4]` float32, flips `[n, K]` uint8."""
  n = len(heights)
  boxes = T.random_crop_boxes(rng, np.repeat(heights, k), np.repeat(widths, k), scale=crop_scale)
  flips = rng.random(n * k) < 0.5 if flip else np.zeros(n * k, bool)
  return (boxes.reshape(n, k, 4).astype(np.float32), flips.reshape(n, k).astype(np.uint8))


def pick(cols: dict, rng) -> tuple[np.ndarray, np.ndarray, dict]:
  """One stored augmentation per example: (boxes `[b, 4]`, flips `[b]` bool, `{'teacher_<m>':
  [b, D]}` of that augmentation); `rng` None (evaluation) takes augmentation 0."""
  crops = np.stack(list(cols[CROP])).astype(np.float64)      # [b, K, 4]
  b, k = crops.shape[:2]
  choice = (np.minimum((rng.random(b) * k).astype(np.int64), k - 1) if rng is not None
            else np.zeros(b, np.int64))
  rows = np.arange(b)
  flips = np.stack(list(cols[FLIP]))[rows, choice].astype(bool)
  teachers = {}
  for m in MODALITIES:
    key = teacher_key(m)
    if key in cols:
      stored = np.stack(list(cols[key])).astype(np.float32)  # [b, K or 1, D]
      teachers[key] = stored[rows, np.minimum(choice, stored.shape[1] - 1)]
  return crops[rows, choice], flips, teachers
