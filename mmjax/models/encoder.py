"""The modality-agnostic Transformer encoder: pre-LayerNorm blocks of attention and MLP
(dense, or sparse Mixture-of-Experts in the layers `config.model.moe` names)."""

from __future__ import annotations

import jax
from flax import nnx

from mmjax.core.partitioning import constrain
from mmjax.models import towers
from mmjax.models.attention import SelfAttention
from mmjax.models.layer_scan import group_runs, scan_blocks
from mmjax.models.layers import LayerNorm
from mmjax.models.mamba import MambaMixer, layer_kinds
from mmjax.models.mlp import Mlp
from mmjax.models.moe.layer import MoeMlp
from mmjax.models.moe.config import moe_layer_indices
from mmjax.models.regions import check_regions
from mmjax.config.defaults import setting


def routed_layer_indices(cfg) -> tuple[int, ...]:
  """Which blocks use routed attention; raises a ValueError naming a bad routed_attention key."""
  ra = cfg.get('routed_attention', None)
  layers = tuple(setting(ra, 'model.routed_attention.layers')) if ra is not None else ()
  bad = [i for i in layers if not 0 <= i < cfg.num_layers]
  if bad:
    raise ValueError(f'config.model.routed_attention.layers {bad} are outside 0..{cfg.num_layers - 1}.')
  if layers:
    check_regions(cfg)
  return layers


class Block(nnx.Module):
  """x + Attn(LN(x)), then x + MLP(LN(x)). Returns `(x, aux)`."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype, moe: bool, routing=None,
               mixer: str = 'attention'):
    eps = towers.norm_eps(cfg)
    self.norm1 = LayerNorm(cfg.width, rngs=rngs, dtype=dtype, eps=eps)
    if mixer == 'mamba':  # model.layer_types: a Mamba token mixer in place of attention
      self.mamba = MambaMixer(cfg, rngs=rngs, dtype=dtype)
    else:
      self.attn = SelfAttention(cfg, rngs=rngs, dtype=dtype, routing=routing)
    self.norm2 = LayerNorm(cfg.width, rngs=rngs, dtype=dtype, eps=eps)
    if moe:
      self.mlp = MoeMlp(cfg, rngs=rngs, dtype=dtype)
    else:
      self.mlp = Mlp(cfg.width, cfg.mlp_dim, rngs=rngs, dtype=dtype, act=towers.activation(cfg))

  def __call__(self, x: jax.Array, mask: jax.Array, *, rng=None, region_size=None,
               trailing_padding=False):
    if hasattr(self, 'mamba'):
      x = x + self.mamba(self.norm1(x), mask, region_size)
    else:
      x = x + self.attn(self.norm1(x), mask, region_size, trailing_padding)
    x = constrain(x, ('batch', 'length', 'embed'))
    if isinstance(self.mlp, Mlp):
      y, aux = self.mlp(self.norm2(x), mask)
    else:
      y, aux = self.mlp(self.norm2(x), mask, rng=rng)
    x = constrain(x + y, ('batch', 'length', 'embed'))
    return x, aux


class Encoder(nnx.Module):
  """`[batch, length, embed]` tokens + mask -> `[batch, length, embed]`, plus per-layer aux.

  With `cfg.scan_layers`, each run of consecutive same-kind blocks is one `lax.scan`
  (`layer_scan.py`); the parameters are the same `block_<i>` either way. `region_size` (static
  int): the tokens per region of routed layers (`regions.py`); None = routed_attention.block_size.
  `trailing_padding` (static bool): every mask is a prefix of ones, so attention gets the
  padding as lengths only (`attention.py`); False is exact for any layout.
  """

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    moe_layers = set(moe_layer_indices(cfg))
    routed = set(routed_layer_indices(cfg))
    ra = cfg.get('routed_attention', None)
    mixers = layer_kinds(cfg)
    if any(mixers[i] != 'attention' for i in routed):
      raise ValueError('config.model.routed_attention.layers must be attention layers of '
                       f'config.model.layer_types; the mixers are {mixers}.')
    self.num_layers = cfg.num_layers
    for i in range(cfg.num_layers):
      routing = (ra.block_size, ra.top_k) if i in routed else None
      setattr(self, f'block_{i}', Block(cfg, rngs=rngs, dtype=dtype, moe=i in moe_layers,
                                        routing=routing, mixer=mixers[i]))
    self.norm = LayerNorm(cfg.width, rngs=rngs, dtype=dtype, eps=towers.norm_eps(cfg))
    kinds = [(i in moe_layers, i in routed, mixers[i]) for i in range(cfg.num_layers)]
    self.runs = (group_runs(kinds) if setting(cfg, 'model.scan_layers')
                 else tuple((i,) for i in range(cfg.num_layers)))

  def __call__(self, x: jax.Array, mask: jax.Array, *, rng=None, region_size=None,
               trailing_padding=False):
    aux = {}
    for run in self.runs:
      blocks = [getattr(self, f'block_{i}') for i in run]
      if len(run) == 1:
        layer_rng = None if rng is None else jax.random.fold_in(rng, run[0])
        x, layer_aux = blocks[0](x, mask, rng=layer_rng, region_size=region_size,
                                 trailing_padding=trailing_padding)
        run_aux = [layer_aux]
      else:
        x, run_aux = scan_blocks(blocks, run, x, mask, rng=rng, region_size=region_size,
                                 trailing_padding=trailing_padding)
      for i, layer_aux in zip(run, run_aux):
        if layer_aux:
          aux[f'layer_{i}'] = layer_aux
    return self.norm(x), aux
