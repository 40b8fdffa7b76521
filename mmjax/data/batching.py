"""Turns a batch of example indices into the model's batch dict (train or eval flavour).

Train: random crop (+ optional flip) per example, random video clip and audio window, a random
caption when an example has several. Eval: central square resized, `num_clips` evenly spaced
clips/windows (a clip axis only when `num_clips > 1`), the first caption. With `text_instances`
K > 1 (MIL-NCE), K captions per example, drawn without replacement (eval: the first K); an
example with fewer gets empty, fully masked instances. Output, for `b` examples: image
`[b, S, S, 3]`, video `[b, (clips,) T, S, S, 3]` uint8 (normalised on device); audio
`[b, (clips,) samples]` int16; text and text_mask `[b, (K,) L]` int32; label `[b]` int32.
Encoded images and videos (`encoded.py`) are decoded here, after the crop is chosen. An example
that fails to decode is replaced in training by a random other one (the batch then carries
`SKIPPED`, how many were replaced); in evaluation it is flagged in `CORRUPT [b]`. A reinforced
builder (`reinforced.py`) replays one stored crop per example instead of drawing one, takes the
first caption, and adds that augmentation's teacher embeddings `teacher_<m> [b, D]` float32.
"""

from __future__ import annotations

import logging

import numpy as np

from mmjax.core import modalities
from mmjax.core.tasks import Resolution
from mmjax.data import encoded, recipe_resize, reinforced as R, transforms as T
from mmjax.data.errors import DataError
from mmjax.data.options import DataOptions
from mmjax.data.readers import Source

_BLAS_LIMITED = False
SKIPPED = 'skipped_examples'   # train batches: int, examples replaced because they were corrupt
CORRUPT = 'corrupt'            # eval batches: bool [b], examples that could not be decoded
_MAX_REPLACE_TRIES = 8


def limit_blas_threads() -> None:
  """Sets numpy's BLAS to one thread, process-wide, once: host transforms are many small
  matmuls, which OpenBLAS's own thread pool only slows down (its spinning threads contend with
  the loader threads and the train step); parallelism comes from `config.data.threads`."""
  global _BLAS_LIMITED
  if not _BLAS_LIMITED:
    try:
      from threadpoolctl import threadpool_limits  # lazy: optional (comes with scikit-learn)
      threadpool_limits(limits=1, user_api='blas')
    except ImportError:  # threadpoolctl comes with scikit-learn; without it, keep the default
      pass
    _BLAS_LIMITED = True


def _sizes(column: np.ndarray, axis: int) -> np.ndarray:
  """Per-example size along `axis` of each example (works for ragged object columns)."""
  if column.dtype == object:
    return np.array([np.shape(v)[axis] for v in column])
  return np.full(len(column), column.shape[1:][axis])


_CAPTION_KEYS = 64  # random keys drawn per example for choosing captions (elastic: fixed width)


class BatchBuilder:
  """`builder(indices [b], rng or None) -> batch dict`; rng None means eval (deterministic)."""

  def __init__(self, source: Source, mapping: dict[str, str], resolution: Resolution,
               options: DataOptions, tokenizer=None, num_clips: int = 1, text_instances: int = 1,
               reinforced: bool = False):
    if 'text' in mapping and tokenizer is None:
      raise ValueError('a text modality needs a tokenizer')
    self.source, self.mapping, self.res = source, dict(mapping), resolution
    self.options, self.tokenizer, self.num_clips = options, tokenizer, int(num_clips)
    self.text_instances, self.reinforced = int(text_instances), bool(reinforced)
    self._stored = ([R.CROP, R.FLIP] + [R.teacher_key(m) for m in R.MODALITIES
                                        if m in self.mapping] if self.reinforced else [])

  def __call__(self, indices, rng=None) -> dict[str, np.ndarray]:
    """`rng`: a `np.random.Generator` or an `order.HostRng` (per-example draws only)."""
    indices = np.asarray(indices)
    out, bad = self._build(indices, rng)
    if not bad.any():
      return out
    logging.warning('%s/%s: examples %s could not be decoded; skipped.', self.source.name,
                    self.source.split, indices[bad].tolist())
    if rng is None:
      out[CORRUPT] = bad
      return out
    skipped = int(bad.sum())
    # Replacements are drawn on this host alone (rare; they are not part of the elastic order).
    plain = rng.generator() if hasattr(rng, 'generator') else rng
    for _ in range(_MAX_REPLACE_TRIES):
      rows = np.flatnonzero(bad)
      sub, sub_bad = self._build(plain.integers(len(self.source), size=len(rows)), plain)
      for key, value in sub.items():
        out[key][rows] = value
      bad[rows] = sub_bad
      if not bad.any():
        out[SKIPPED] = skipped
        return out
    raise DataError(f'Dataset {self.source.name!r} split {self.source.split!r}: '
                    f'{_MAX_REPLACE_TRIES} random replacements of a corrupt example were all '
                    'corrupt too; check the dataset files.')

  def _build(self, indices, rng) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The batch of `indices` and `bad [b]`, the examples that failed to decode."""
    cols = self.source.read(indices, sorted(set(self.mapping.values()) | set(self._stored)))
    out, bad = {}, np.zeros(len(indices), bool)
    replay = None
    if self.reinforced:  # a stored augmentation per example, and its teacher embeddings
      boxes, flips, teachers = R.pick(cols, rng)
      replay = (boxes, flips)
      out.update(teachers)
    for target, feature in self.mapping.items():
      column = cols[feature]
      if target == 'label':
        out['label'] = np.asarray(column, np.int32)
      else:  # the host transform the modality table names (core/modalities.py)
        out.update(modalities.load(modalities.get(target).transform)(self, column, rng, bad,
                                                                    replay))
    return out, bad

  def _boxes(self, hs, ws, rng):
    """Crop boxes `[b, 4]` and flips `[b]` (or None): random in training, central in eval."""
    if rng is None:
      return T.center_boxes(hs, ws), None
    boxes = T.random_crop_boxes(rng, hs, ws, scale=self.options.crop_scale)
    return boxes, (rng.random(len(hs)) < 0.5 if self.options.flip else None)

  def _resize(self, pixels: np.ndarray, hs, ws, rng) -> np.ndarray:
    """`[b, ..., H, W, C]` whose example i fills `[hs[i], ws[i]]` -> `[b, ..., S, S, 3]`."""
    boxes, flip = self._boxes(hs, ws, rng)
    return T.crop_resize(pixels, boxes, self.res.image_size, flip)

  def _pixels(self, column: np.ndarray, rng, bad: np.ndarray, replay=None) -> np.ndarray:
    """Images cropped at drawn boxes, or at `replay = (boxes [b, 4], flips [b])` (stored)."""
    if replay is None and rng is None and self.options.eval_resize:  # the model's own recipe
      return recipe_resize.resize_column(column, self.res.image_size, self.options.eval_resize,
                                         bad)
    hs, ws = R.image_sizes(column, bad)
    boxes, flip = replay if replay is not None else self._boxes(hs, ws, rng)
    return R.crop_images(column, boxes, self.res.image_size, flip, bad, sizes=(hs, ws))

  def _video(self, column: np.ndarray, rng, bad: np.ndarray) -> np.ndarray:
    is_encoded = encoded.is_encoded_column(column)
    lengths = encoded.frame_counts(column) if is_encoded else _sizes(column, 0)
    num, stride = self.res.num_frames, self.options.frame_stride
    starts = T.clip_starts(rng, lengths, (num - 1) * stride + 1, self.num_clips)  # [b(, clips)]
    idx = T.frame_indices(lengths, num, stride, starts)               # [b, (clips,) T]
    if is_encoded:
      hs, ws = encoded.sizes(column, bad)
      boxes, flip = self._boxes(hs, ws, rng)
      clips = encoded.decode_clips(column, idx, boxes, self.res.image_size, flip, hs, ws, bad)
      return clips[:, 0] if rng is None and self.num_clips == 1 else clips
    if rng is None and self.num_clips == 1:
      idx = idx[:, 0]
    hs, ws = _sizes(column, -3), _sizes(column, -2)
    if column.dtype == object:  # ragged decoded videos: each clip resized alone, never padded
      boxes, flip = self._boxes(hs, ws, rng)
      return np.concatenate([T.crop_resize(np.asarray(v)[i][None], boxes[j:j + 1],
                                           self.res.image_size,
                                           None if flip is None else flip[j:j + 1])
                             for j, (v, i) in enumerate(zip(column, idx))])
    rows = np.arange(len(column)).reshape((-1,) + (1,) * (idx.ndim - 1))
    return self._resize(column[rows, idx], hs, ws, rng)       # [b, (clips,) T, H, W, C] in

  def _audio(self, column: np.ndarray, rng) -> np.ndarray:
    lengths = _sizes(column, 0)
    samples = self.res.audio_samples
    starts = T.clip_starts(rng, lengths, samples, self.num_clips)     # [b] or [b, clips]
    if rng is None and self.num_clips == 1:
      starts = starts[:, 0]
    return T.crop_audio(T.stack_ragged(column), starts, samples)

  def _text(self, column: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    if self.text_instances > 1:
      return self._text_instances(column, rng)
    texts = []
    pick = rng.random(len(column)) if rng is not None else np.zeros(len(column))  # one per example
    for value, u in zip(column, pick):
      if isinstance(value, (list, tuple, np.ndarray)):  # several captions: one per example
        # an example with none (an empty list) gets an empty, fully masked text
        value = value[min(int(u * len(value)), len(value) - 1)] if len(value) else ''
      texts.append(value)
    return self.tokenizer.encode(texts, self.res.text_length)

  def _text_instances(self, column: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """K captions per example -> ids and mask `[b, K, L]`; missing instances are all zero."""
    k, texts = self.text_instances, []
    listed = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v] for v in column]
    # Without replacement: the k smallest of per-caption random keys. The keys are drawn per
    # example over a fixed width, so every host draws the same keys for the same example.
    width = max([_CAPTION_KEYS] + [len(o) for o in listed])
    keys = rng.random((len(column), width)) if rng is not None else None
    for i, options in enumerate(listed):
      if keys is not None and len(options) > 1:
        options = [options[int(j)] for j in np.argsort(keys[i, :len(options)])[:k]]
      chosen = options[:k]
      texts += chosen + [''] * (k - len(chosen))
    ids, mask = self.tokenizer.encode(texts, self.res.text_length)
    return ids.reshape(len(column), k, -1), mask.reshape(len(column), k, -1)


# Host transforms of the built-in modalities, named in core/modalities.py: each takes the
# builder, one feature column `[b, ...]`, the rng (None in eval), the `bad [b]` flags to set on
# decoding failures and a reinforced `replay`, and returns the modality's batch arrays.


def image(builder: BatchBuilder, column, rng, bad, replay) -> dict[str, np.ndarray]:
  return {'image': builder._pixels(column, rng, bad, replay)}


def video(builder: BatchBuilder, column, rng, bad, replay) -> dict[str, np.ndarray]:
  del replay
  return {'video': builder._video(column, rng, bad)}


def audio(builder: BatchBuilder, column, rng, bad, replay) -> dict[str, np.ndarray]:
  del bad, replay
  return {'audio': builder._audio(column, rng)}


def text(builder: BatchBuilder, column, rng, bad, replay) -> dict[str, np.ndarray]:
  del bad
  ids, mask = builder._text(column, rng if replay is None else None)
  return {'text': ids, 'text_mask': mask}


def point_cloud(builder: BatchBuilder, column, rng, bad, replay) -> dict[str, np.ndarray]:
  del bad, replay
  points, mask = T.point_sets(column, builder.res.num_points, 3, rng)
  return {'point_cloud': points, 'point_cloud_mask': mask}
