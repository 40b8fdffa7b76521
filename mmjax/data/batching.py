"""Turns a batch of example indices into the model's batch dict (train or eval flavour).

Train: random crop (+ optional flip) per example, random video clip and audio window, a random
caption when an example has several. Eval: central square resized, `num_clips` evenly spaced
clips/windows (a clip axis only when `num_clips > 1`), the first caption. With `text_instances`
K > 1 (MIL-NCE), K captions per example, drawn without replacement (eval: the first K); an
example with fewer gets empty, fully masked instances. Output, for `b` examples: image
`[b, S, S, 3]`, video `[b, (clips,) T, S, S, 3]` float32 in [-1, 1]; audio `[b, (clips,) samples]`
float32; text and text_mask `[b, (K,) L]` int32; label `[b]` int32.
"""

from __future__ import annotations

import numpy as np

from mmjax.core.tasks import Resolution
from mmjax.data import transforms as T
from mmjax.data.options import DataOptions
from mmjax.data.readers import Source

_BLAS_LIMITED = False


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


class BatchBuilder:
  """`builder(indices [b], rng or None) -> batch dict`; rng None means eval (deterministic)."""

  def __init__(self, source: Source, mapping: dict[str, str], resolution: Resolution,
               options: DataOptions, tokenizer=None, num_clips: int = 1, text_instances: int = 1):
    if 'text' in mapping and tokenizer is None:
      raise ValueError('a text modality needs a tokenizer')
    self.source, self.mapping, self.res = source, dict(mapping), resolution
    self.options, self.tokenizer, self.num_clips = options, tokenizer, int(num_clips)
    self.text_instances = int(text_instances)

  def __call__(self, indices, rng=None) -> dict[str, np.ndarray]:
    """`rng`: a `np.random.Generator` or an `order.HostRng` (per-example draws only)."""
    cols = self.source.read(np.asarray(indices), sorted(set(self.mapping.values())))
    out = {}
    for target, feature in self.mapping.items():
      column = cols[feature]
      if target == 'image':
        out['image'] = self._pixels(column, rng)
      elif target == 'video':
        out['video'] = self._video(column, rng)
      elif target == 'audio':
        out['audio'] = self._audio(column, rng)
      elif target == 'text':
        out['text'], out['text_mask'] = self._text(column, rng)
      elif target == 'label':
        out['label'] = np.asarray(column, np.int32)
    return out

  def _resize(self, pixels: np.ndarray, hs, ws, rng) -> np.ndarray:
    """`[b, ..., H, W, C]` whose example i fills `[hs[i], ws[i]]` -> `[b, ..., S, S, 3]`."""
    if rng is None:
      return T.crop_resize(pixels, T.center_boxes(hs, ws), self.res.image_size)
    boxes = T.random_crop_boxes(rng, hs, ws, scale=self.options.crop_scale)
    flip = rng.random(len(pixels)) < 0.5 if self.options.flip else None
    return T.crop_resize(pixels, boxes, self.res.image_size, flip)

  def _pixels(self, column: np.ndarray, rng) -> np.ndarray:
    return self._resize(T.stack_ragged(column), _sizes(column, -3), _sizes(column, -2), rng)

  def _video(self, column: np.ndarray, rng) -> np.ndarray:
    lengths = _sizes(column, 0)
    frames = T.stack_ragged(column)
    num, stride = self.res.num_frames, self.options.frame_stride
    starts = T.clip_starts(rng, lengths, (num - 1) * stride + 1, self.num_clips)  # [b(, clips)]
    idx = T.frame_indices(lengths, num, stride, starts)               # [b, (clips,) T]
    rows = np.arange(len(frames)).reshape((-1,) + (1,) * (idx.ndim - 1))
    clips = frames[rows, idx]                                         # [b, (clips,) T, H, W, C]
    if rng is None and self.num_clips == 1:
      clips = clips[:, 0]
    return self._resize(clips, _sizes(column, -3), _sizes(column, -2), rng)

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
        value = value[min(int(u * len(value)), len(value) - 1)]
      texts.append(value)
    return self.tokenizer.encode(texts, self.res.text_length)

  def _text_instances(self, column: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """K captions per example -> ids and mask `[b, K, L]`; missing instances are all zero."""
    k, texts = self.text_instances, []
    for value in column:
      options = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
      if rng is not None and len(options) > 1:
        pick = rng.choice(len(options), min(k, len(options)), replace=False)
        options = [options[int(i)] for i in pick]
      chosen = options[:k]
      texts += chosen + [''] * (k - len(chosen))
    ids, mask = self.tokenizer.encode(texts, self.res.text_length)
    return ids.reshape(len(column), k, -1), mask.reshape(len(column), k, -1)
