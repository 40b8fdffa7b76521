"""The light decoder of masked modeling (MultiMAE, SyCoCa): one per reconstructed modality.

Every token of the modality becomes a query: its encoder state where it was visible, a learned
mask token where it was masked, plus the decoder's own factorized positions. A few small blocks
of self-attention over those queries, cross-attention to a context (MultiMAE: every visible
token the encoder saw, of all modalities; SyCoCa: the caption's text tokens) and an MLP, then a
linear head, predict each token's patch. Widths from `config.model.mae_decoder`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from mmjax.core.partitioning import constrain
from mmjax.models import patch_targets
from mmjax.models.layers import Dense, LayerNorm, param
from mmjax.models.text_decoder import DecoderBlock

_AXES = ('batch', 'length', 'embed')


def position_sizes(cfg, modality: str) -> tuple[int, ...]:
  """Largest grid of `modality` along each axis (image `(h, w)`, video `(t, h, w)`, audio
  `(time, mel bands)` or `(time,)`), from `config.model` (its registered patch target)."""
  return tuple(patch_targets.registered(modality).position_sizes(cfg))


class MaskedDecoder(nnx.Module):
  """Encoder states at a modality's tokens `[b, n, W]` + which were visible `[b, n]` + a context
  `[b, c, W]` (mask `[b, c]`) -> float32 patch predictions `[b, n, patch_dim]`."""

  def __init__(self, cfg, modality: str, patch_dim: int, *, rngs: nnx.Rngs, dtype):
    dc = cfg.mae_decoder
    w = int(dc.width)
    block_cfg = ml_collections.ConfigDict(dict(width=w, num_heads=int(dc.num_heads),
                                               mlp_dim=int(dc.mlp_dim)))
    init = nnx.initializers.normal(0.02)
    self.inp = Dense(cfg.width, w, ('embed', None), rngs=rngs, dtype=dtype)
    self.ctx = Dense(cfg.width, w, ('embed', None), rngs=rngs, dtype=dtype)
    self.mask_token = param(rngs, init, (1, w), (None, 'embed'))
    self.num_axes = len(position_sizes(cfg, modality))
    for i, size in enumerate(position_sizes(cfg, modality)):
      setattr(self, f'pos_{i}', param(rngs, init, (size, w), (None, 'embed')))
    self.num_layers = int(dc.layers)
    for i in range(self.num_layers):
      setattr(self, f'block_{i}', DecoderBlock(block_cfg, rngs=rngs, dtype=dtype, cross=True))
    self.norm = LayerNorm(w, rngs=rngs, dtype=dtype)
    self.head = Dense(w, patch_dim, ('embed', None), rngs=rngs, dtype=jnp.float32)
    self.dtype = dtype

  def positions(self, grid: tuple[int, ...]) -> jax.Array:
    """Factorized positions of a `grid` of tokens -> `[prod(grid), width]`."""
    if len(grid) != self.num_axes:
      raise ValueError(f'decoder positions have {self.num_axes} axes, the grid {grid} has '
                       f'{len(grid)}.')
    pos = 0.0
    for i, g in enumerate(grid):
      table = getattr(self, f'pos_{i}')
      if g > table.shape[0]:
        raise ValueError(f'a grid of {grid} tokens exceeds the decoder positions '
                         f'({table.shape[0]} along axis {i}): raise the config.model max size.')
      shape = [1] * len(grid) + [table.shape[1]]
      shape[i] = g
      pos = pos + table[:g].reshape(shape)
    return jnp.reshape(pos, (math.prod(grid), -1))

  def __call__(self, states: jax.Array, visible: jax.Array, grid: tuple[int, ...],
               context: jax.Array, context_mask: jax.Array) -> jax.Array:
    b, n = visible.shape
    x = self.inp(states)
    x = jnp.where(visible[..., None].astype(bool), x, self.mask_token[...].astype(x.dtype))
    x = constrain(x + self.positions(grid).astype(x.dtype), _AXES)
    ctx = constrain(self.ctx(context), _AXES)
    everyone = jnp.ones((b, n, n), bool)
    allowed = jnp.broadcast_to(context_mask.astype(bool)[:, None, :], (b, n, ctx.shape[1]))
    for i in range(self.num_layers):
      x = getattr(self, f'block_{i}')(x, everyone, ctx, allowed)
    return self.head(self.norm(x).astype(jnp.float32))


def patch_dim(cfg, modality: str) -> int:
  """Values per reconstructed patch of `modality` (see patch_targets.py)."""
  return int(patch_targets.registered(modality).patch_dim(cfg))
