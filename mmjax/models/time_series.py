"""Time series -> tokens: each channel cut into patches of `patch_steps` steps (PatchTST-style,
channel-independent), one shared linear projection, learned time and channel positions.

Input `[batch, steps, channels]` float (taken at its stored scale: standardise beforehand) and
a step mask `[batch, steps]`; output tokens `[batch, channels * steps / patch_steps, width]`,
channel-major, and their mask (a patch is real when any of its steps is). `config.model
.time_series`: patch_steps, max_patches (positions in time), max_channels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.models.layers import Dense, param
from mmjax.models.patch_targets import PatchTarget

_POS_INIT = nnx.initializers.normal(0.02)


def patchify(x: jax.Array, patch: int) -> jax.Array:
  """`[b, T, C]` -> `[b, C * (T / patch), patch]`, channel-major patches."""
  b, t, c = x.shape
  return x.reshape(b, t // patch, patch, c).transpose(0, 3, 1, 2).reshape(b, c * (t // patch),
                                                                         patch)


class TimeSeriesEmbed(nnx.Module):
  """See the module docstring."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    ts = cfg.time_series
    self.patch, self.max_patches, self.max_channels = (int(ts.patch_steps), int(ts.max_patches),
                                                       int(ts.max_channels))
    self.proj = Dense(self.patch, cfg.width, (None, 'embed'), rngs=rngs, dtype=dtype)
    self.pos_t = param(rngs, _POS_INIT, (self.max_patches, cfg.width), (None, 'embed'))
    self.pos_c = param(rngs, _POS_INIT, (self.max_channels, cfg.width), (None, 'embed'))

  def grid_shape(self, shape) -> tuple[int, int]:
    """Token grid `(channels, patches)` of an input `[batch, steps, channels]`."""
    b, t, c = shape
    if t % self.patch or not 0 < t // self.patch <= self.max_patches:
      raise ValueError(f'a time series of {t} steps must be a multiple of config.model'
                       f'.time_series.patch_steps={self.patch}, with at most max_patches='
                       f'{self.max_patches} patches: change series_length or those keys.')
    if c > self.max_channels:
      raise ValueError(f'a time series of {c} channels exceeds config.model.time_series'
                       f'.max_channels={self.max_channels}: raise it.')
    return c, t // self.patch

  def __call__(self, x: jax.Array, mask: jax.Array | None = None):
    b, t, _ = x.shape
    c, n = self.grid_shape(x.shape)
    tokens = self.proj(patchify(x, self.patch))                         # [b, c * n, width]
    pos = self.pos_c[:c][:, None] + self.pos_t[:n][None, :]
    tokens = tokens + pos.reshape(c * n, -1).astype(tokens.dtype)
    steps = jnp.ones((b, t), jnp.int32) if mask is None else jnp.asarray(mask, jnp.int32)
    real = steps.reshape(b, n, self.patch).max(-1)                      # [b, n]
    return tokens, jnp.tile(real, (1, c))


def _targets(embed, x):
  return patchify(x, embed.patch), embed.grid_shape(x.shape)


# Masked modeling reconstructs the patches (positions: channel x time).
PATCH_TARGET = PatchTarget(
    _targets, lambda cfg: (int(cfg.time_series.max_channels), int(cfg.time_series.max_patches)),
    lambda cfg: int(cfg.time_series.patch_steps))
