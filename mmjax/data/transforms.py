"""Per-modality host transforms on whole batches (numpy, vectorised over the batch).

Pixels: uint8 [0, 255] (or float [0, 1]) in, uint8 out (the model's embedding normalises on
device, so a quarter of float32's bytes cross to it); gray images get 3 channels. Crops and
resizes are separable antialiased-bilinear resampling done as two batched matrix products, so a
random crop per example costs one matmul and a flip is free.
Audio: mono waveforms cropped or zero-padded to length, sent as int16 (float [-1, 1] is scaled by
32768; the embedding undoes it on device). Video: a clip's frames all share one crop.
Point sets and time series: sampled or windowed, zero-padded with a mask (`point_sets`,
`series_windows`); `time_series` is that modality's host transform.
"""

from __future__ import annotations

import numpy as np


def _resample_matrix(start, length, in_size: int, out_size: int) -> np.ndarray:
  """`[n, out_size, in_size]` weights mapping pixels of window `[start, start+length)` (per
  example, in pixels) to `out_size` outputs: triangle filter, widened when downsampling."""
  start, length = np.asarray(start, np.float64), np.asarray(length, np.float64)
  scale = length / out_size                                            # input px per output px
  centres = start[:, None] + (np.arange(out_size) + 0.5) * scale[:, None] - 0.5  # [n, out]
  support = np.maximum(scale, 1.0)[:, None, None]
  dist = np.abs(np.arange(in_size)[None, None, :] - centres[:, :, None]) / support
  weights = np.maximum(0.0, 1.0 - dist)
  weights /= np.maximum(weights.sum(-1, keepdims=True), 1e-8)
  return weights.astype(np.float32)


def _channels_first_rgb(pixels: np.ndarray) -> np.ndarray:
  """`[b, t, H, W, C]` uint8 [0, 255] or float [0, 1] -> float32 `[b, 3, t, H, W]` in [0, 255]:
  gray is repeated, an alpha channel dropped."""
  x = pixels.transpose(0, 4, 1, 2, 3)
  x = x[:, :3] if x.shape[1] >= 3 else np.repeat(x[:, :1], 3, axis=1)
  if pixels.dtype == np.uint8:
    return x.astype(np.float32)
  return x.astype(np.float32) * np.float32(255.0)


def crop_resize(pixels: np.ndarray, boxes: np.ndarray, size: int,
                flip: np.ndarray | None = None) -> np.ndarray:
  """Crops `boxes [b, 4]` (top, left, height, width in pixels) out of `pixels [b, ..., H, W, C]`
  and resizes them to `[b, ..., size, size, 3]` uint8 (rounded); `flip [b]` mirrors."""
  b, h, w = pixels.shape[0], pixels.shape[-3], pixels.shape[-2]
  rows = _resample_matrix(boxes[:, 0], boxes[:, 2], h, size)  # [b, S, H]
  cols = _resample_matrix(boxes[:, 1], boxes[:, 3], w, size)  # [b, S, W]
  if flip is not None:
    cols = np.where(np.asarray(flip)[:, None, None], cols[:, ::-1], cols)
  lead = pixels.shape[1:-3]                                    # e.g. (T,) for video
  t = int(np.prod(lead))
  x = _channels_first_rgb(pixels.reshape((b, t, h, w, pixels.shape[-1])))  # [b, 3, t, H, W]
  x = np.matmul(rows[:, None, None], x)                        # [b, 3, t, S, W]
  x = np.matmul(x, cols[:, None, None].transpose(0, 1, 2, 4, 3))  # [b, 3, t, S, S]
  x = np.clip(np.rint(x.transpose(0, 2, 3, 4, 1)), 0, 255)  # filter weights sum to 1
  return x.astype(np.uint8).reshape((b,) + lead + (size, size, 3))


def random_crop_boxes(rng: np.random.Generator, heights, widths, scale=(0.7, 1.0),
                      ratio=(3 / 4, 4 / 3), tries: int = 10) -> np.ndarray:
  """Inception-style random-resized-crop boxes `[n, 4]` (top, left, height, width) inside
  images of `heights [n]`, `widths [n]`; the central square when no sampled box fits."""
  h, w = np.asarray(heights, np.float64)[:, None], np.asarray(widths, np.float64)[:, None]
  n = len(h)
  area = h * w * rng.uniform(scale[0], scale[1], (n, tries))
  aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), (n, tries)))
  ch, cw = np.sqrt(area / aspect), np.sqrt(area * aspect)
  fits = (ch <= h) & (cw <= w)
  first = np.argmax(fits, axis=1)
  side = np.minimum(h, w)[:, 0]
  ch = np.where(fits.any(1), ch[np.arange(n), first], side)
  cw = np.where(fits.any(1), cw[np.arange(n), first], side)
  top = rng.uniform(0, 1, n) * (h[:, 0] - ch)
  left = rng.uniform(0, 1, n) * (w[:, 0] - cw)
  return np.stack([top, left, ch, cw], axis=1)


def center_boxes(heights, widths) -> np.ndarray:
  """The largest central square of each image, `[n, 4]`: eval keeps square frames whole."""
  h, w = np.asarray(heights, np.float64), np.asarray(widths, np.float64)
  side = np.minimum(h, w)
  return np.stack([(h - side) / 2, (w - side) / 2, side, side], axis=1)


def frame_indices(num_source: np.ndarray, num_frames: int, stride: int,
                  starts: np.ndarray) -> np.ndarray:
  """`[n, ..., num_frames]` frame indices from `starts [n, ...]`, clamped to each video's length
  (`num_source [n]`): short videos repeat their last frame."""
  idx = starts[..., None] + stride * np.arange(num_frames)
  last = (np.asarray(num_source) - 1).reshape((-1,) + (1,) * (idx.ndim - 1))
  return np.clip(idx, 0, last).astype(np.int64)


def clip_starts(rng: np.random.Generator | None, lengths: np.ndarray, window: int,
                num_clips: int = 1) -> np.ndarray:
  """Start offsets of windows of `window` items: `[n]` uniformly random when `rng` is given,
  else `[n, num_clips]` evenly spaced from first to last (one clip = centred)."""
  room = np.maximum(np.asarray(lengths) - window, 0)
  if rng is not None:
    return np.floor(rng.uniform(0, 1, len(room)) * (room + 1)).astype(np.int64)
  if num_clips == 1:
    return (room // 2)[:, None].astype(np.int64)
  return np.round(room[:, None] * np.linspace(0, 1, num_clips)[None]).astype(np.int64)


def audio_int16(waveforms: np.ndarray) -> np.ndarray:
  """Float waveforms in [-1, 1] -> int16 (`round(x * 32768)`, clipped); int16 stays as is. The
  model's audio embedding divides by 32768 on device."""
  if waveforms.dtype == np.int16:
    return waveforms
  return np.clip(np.rint(waveforms * np.float32(32768.0)), -32768, 32767).astype(np.int16)


def audio_float(waveforms: np.ndarray) -> np.ndarray:
  """`[n, samples(, channels)]` -> mono float32 `[n, samples]` (int16 scaled by 1/32768)."""
  x = waveforms.astype(np.float32, copy=False)
  if waveforms.dtype == np.int16:
    x = x / np.float32(32768.0)
  return x.mean(-1) if x.ndim == 3 else x


def crop_audio(waveforms: np.ndarray, starts: np.ndarray, samples: int) -> np.ndarray:
  """Windows of `samples` from `waveforms [n, N]` at `starts [n, ...]`, zero-padded past the end:
  `[n, ..., samples]` int16 (`audio_int16`)."""
  mono_int16 = waveforms.dtype == np.int16 and waveforms.ndim == 2
  x = waveforms if mono_int16 else audio_int16(audio_float(waveforms))  # no float round trip
  short = int(np.max(starts)) + samples - x.shape[1]
  padded = np.pad(x, ((0, 0), (0, short))) if short > 0 else x
  windows = np.lib.stride_tricks.sliding_window_view(padded, samples, axis=1)  # a view
  rows = np.arange(len(x)).reshape((-1,) + (1,) * (np.ndim(starts) - 1))
  return windows[rows, starts]


def stack_ragged(values: np.ndarray) -> np.ndarray:
  """An object array of per-example arrays -> one `[n, ...]` array, padding each axis with zeros
  to the largest size (used for variable-length audio/video)."""
  if values.dtype != object:
    return values
  shape = np.max([np.shape(v) for v in values], axis=0)
  out = np.zeros((len(values),) + tuple(shape), np.asarray(values[0]).dtype)
  for i, v in enumerate(values):
    out[(i,) + tuple(slice(0, s) for s in np.shape(v))] = v
  return out


def _rows(value) -> np.ndarray:
  """One example's `[n, c]` float32 rows (a 1-D value is one column)."""
  x = np.asarray(value, np.float32)
  return x[:, None] if x.ndim == 1 else x.reshape(len(x), -1)


def point_sets(values, num: int, dims: int, rng=None) -> tuple[np.ndarray, np.ndarray]:
  """Point sets (a `[b, n, c]` array or an object array of `[n_i, c]`) -> points
  `[b, num, dims]` float32 and a validity mask `[b, num]` int32.

  A set with more than `num` points keeps a random subset (training, `rng` given) or `num`
  evenly spaced ones (evaluation); training also shuffles each set (the embedding must not
  care). Fewer points are zero-padded and masked. Columns beyond `dims` are dropped, missing
  ones are zero (a 2-D point set lies in the z = 0 plane)."""
  points = np.zeros((len(values), num, dims), np.float32)
  mask = np.zeros((len(values), num), np.int32)
  rows = [_rows(v)[:, :dims] for v in values]
  # one row of random keys per example (per-example draws: the same on every host count)
  keys = (rng.random((len(rows), max([num] + [len(x) for x in rows])))
          if rng is not None else None)
  for i, x in enumerate(rows):
    n = len(x)
    if keys is not None:
      keep = np.argsort(keys[i, :n], kind='stable')[:num]
    else:
      keep = (np.arange(n) if n <= num else
              np.round(np.linspace(0, n - 1, num)).astype(np.int64))
    points[i, :len(keep), :x.shape[1]] = x[keep]
    mask[i, :len(keep)] = 1
  return points, mask


def series_windows(values, length: int, channels: int, rng=None) -> tuple[np.ndarray, np.ndarray]:
  """Multichannel sequences (`[b, T, C]` or an object array of `[T_i, C_i]`) -> windows
  `[b, length, channels]` float32 and a step mask `[b, length]` int32: a random window in
  training, the central one in evaluation (as audio); shorter sequences are zero-padded and
  masked, extra channels dropped, missing ones zero."""
  rows = [_rows(v) for v in values]
  starts = clip_starts(rng, np.array([len(x) for x in rows]), length).reshape(-1)
  out = np.zeros((len(rows), length, channels), np.float32)
  mask = np.zeros((len(rows), length), np.int32)
  for i, (x, s) in enumerate(zip(rows, starts)):
    w = x[s:s + length, :channels]
    out[i, :len(w), :w.shape[1]] = w
    mask[i, :len(w)] = 1
  return out, mask


def time_series(builder, column, rng, bad, replay) -> dict[str, np.ndarray]:
  """The time_series host transform (core/modalities.py): `series_windows` at the task's
  `series_length` and `series_channels`."""
  del bad, replay
  x, mask = series_windows(column, builder.res.series_length, builder.res.series_channels, rng)
  return {'time_series': x, 'time_series_mask': mask}
