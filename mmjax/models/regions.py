"""Regions for routed (BiFormer) attention: each modality's tokens as consecutive blocks.

Routed attention routes between blocks of `region_size` consecutive tokens. So that a block is
a region, the model lists patch tokens window by window before the encoder: an image's
`[h, w]` patch grid in S×S windows, a video's `[t, h, w]` tubelet grid in T×S×S space-time
windows (`kernels.window_order`); a grid the window does not tile is padded with masked tokens.
Audio and text are 1-D blocks of `block_size` tokens (the attention masks the tail padding). A
CLS token gets a region of its own. Everything else in the encoder ignores token order.

Sizes come from `config.model.routed_attention`: `window` (S, patches), `window_frames` (T,
tubelets) and `block_size` (audio and text tokens).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mmjax.core import modalities
from mmjax.kernels import window_order


def region_shape(cfg, modality: str) -> tuple[int, ...]:
  """The region of `modality` in tokens: `(S, S)` image, `(T, S, S)` video, `(block_size,)`."""
  ra = cfg.routed_attention
  axes = len(modalities.get(modality).input.shape) - 1   # 'grid' modalities: pixels + channels
  if modalities.get(modality).region == 'grid' and axes == 2:
    return (int(ra.window),) * 2
  if modalities.get(modality).region == 'grid' and axes == 3:
    return (int(ra.window_frames),) + (int(ra.window),) * 2
  return (int(ra.block_size),)


def region_size(cfg, modality: str) -> int:
  return math.prod(region_shape(cfg, modality))


def check_regions(cfg) -> None:
  """Raises a ValueError naming the key unless every region size is a positive int."""
  ra = cfg.routed_attention
  for key in ('block_size', 'window', 'window_frames', 'top_k'):
    value = ra.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f'config.model.routed_attention.{key} must be a positive int, '
                       f'got {value!r}.')


def to_windows(tokens: jax.Array, mask: jax.Array, grid: tuple[int, ...],
               window: tuple[int, ...]):
  """Raster-order tokens `[batch, prod(grid), width]` + mask `[batch, prod(grid)]` -> the same,
  window by window, the grid first padded (masked) up to a multiple of the window per axis:
  `[batch, prod(padded grid), width]`, each run of `prod(window)` tokens one window."""
  batch, width = tokens.shape[0], tokens.shape[-1]
  padded = tuple(-(-g // w) * w for g, w in zip(grid, window))
  pad = [(0, 0)] + [(0, p - g) for g, p in zip(grid, padded)]
  x = jnp.pad(tokens.reshape(batch, *grid, width), pad + [(0, 0)])
  m = jnp.pad(mask.reshape(batch, *grid), pad)
  order = window_order(padded, window)
  return x.reshape(batch, -1, width)[:, order], m.reshape(batch, -1)[:, order]


def own_region(tokens: jax.Array, mask: jax.Array, size: int):
  """Prefix tokens `[batch, n, width]` (e.g. CLS) padded with masked tokens to whole regions."""
  extra = -tokens.shape[1] % size
  return (jnp.pad(tokens, ((0, 0), (0, extra), (0, 0))),
          jnp.pad(mask, ((0, 0), (0, extra))))
