"""Token orders that make consecutive blocks of patch tokens into spatial windows (regions).

Patch tokens of an image `(h, w)` or video `(t, h, w)` grid are usually in raster order. Taking
`tokens[:, window_order(grid, window)]` lists the tokens window by window (windows in raster
order, raster order inside each window), so blocks of `prod(window)` consecutive tokens are
BiFormer regions; `window_order_inverse` undoes it.
"""

import math

import numpy as np


def window_order(grid_shape, window_shape) -> np.ndarray:
  """Permutation `[num_tokens]` int32: windowed position n holds raster token order[n]."""
  grid_shape, window_shape = tuple(grid_shape), tuple(window_shape)
  if len(grid_shape) != len(window_shape) or len(grid_shape) not in (2, 3):
    raise ValueError(f'window_order: grid {grid_shape} and window {window_shape} must both be '
                     '(h, w) or (t, h, w).')
  if any(w <= 0 or g % w for g, w in zip(grid_shape, window_shape)):
    raise ValueError(f'window_order: window {window_shape} must evenly tile grid {grid_shape}.')
  split = []
  for g, w in zip(grid_shape, window_shape):
    split += [g // w, w]
  ndim = len(grid_shape)
  axes = [2 * i for i in range(ndim)] + [2 * i + 1 for i in range(ndim)]
  raster = np.arange(math.prod(grid_shape), dtype=np.int32).reshape(split)
  return raster.transpose(axes).reshape(-1)


def window_order_inverse(grid_shape, window_shape) -> np.ndarray:
  """Inverse permutation: `windowed[:, inverse]` is back in raster order."""
  order = window_order(grid_shape, window_shape)
  inverse = np.empty_like(order)
  inverse[order] = np.arange(order.size, dtype=order.dtype)
  return inverse
