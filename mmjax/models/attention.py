"""Multi-head self-attention with optional QK-norm.

The attention itself is chosen by `config.model.attention_impl` (`auto | xla | pallas | cudnn`,
see `mmjax.kernels.select`): `auto` is the Pallas flash kernel on TPU, cuDNN on GPU, the XLA
reference on CPU.
Layers listed in `config.model.routed_attention.layers` use BiFormer bi-level routed attention
between regions of consecutive tokens (`regions.py` says how each modality's tokens are laid
out); there `auto` is the Pallas kernel on TPU only, the XLA reference elsewhere.

Padding reaches every path as what it is. Where the caller knows it is trailing (one
modality's tokens without routed layers: `trailing_padding=True`) it travels as `lengths`
only, so flash skips the empty block pairs and cuDNN gets sequence lengths; anywhere else
(windows padded inside, a CLS region, fused modalities) the mask travels as segment ids, plus
`lengths` = one past the last real token, so flash still skips the tail and cuDNN gets a mask.
`config.model.kv_heads` < num_heads is grouped-query attention: k and v have kv_heads heads,
read in place by the kernels (query head h uses kv head h // (heads / kv_heads)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jax.sharding import PartitionSpec as P

from mmjax import kernels
from mmjax.core import partitioning
from mmjax.core.partitioning import constrain
from mmjax.models.layers import DenseGeneral, LayerNorm
from mmjax.config.defaults import setting


class SelfAttention(nnx.Module):
  """`[batch, length, embed]` -> same; `mask [batch, length]` (1 = real token) keeps padding
  out. `routing=(block_size, top_k)` switches the layer to bi-level routed attention; a call's
  `region_size` (the modality's region, in tokens) replaces the block size."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype, routing: tuple[int, int] | None = None):
    h, d = cfg.num_heads, cfg.width // cfg.num_heads
    kv_heads = setting(cfg, 'model.kv_heads') or h
    if h % kv_heads:
      raise ValueError(f'config.model.kv_heads={kv_heads} must divide num_heads={h}.')
    if kv_heads == h:   # one projection, the parameter layout of every checkpoint so far
      self.qkv = DenseGeneral((cfg.width,), (3, h, d), ('embed', None, 'heads', 'kv'),
                              rngs=rngs, dtype=dtype)
    else:               # grouped-query: kv_heads k/v heads
      self.q = DenseGeneral((cfg.width,), (h, d), ('embed', 'heads', 'kv'), rngs=rngs,
                            dtype=dtype)
      self.kv = DenseGeneral((cfg.width,), (2, kv_heads, d), ('embed', None, 'heads', 'kv'),
                             rngs=rngs, dtype=dtype)
    self.kv_heads = kv_heads
    self.out = DenseGeneral((h, d), (cfg.width,), ('heads', 'kv', 'embed'), rngs=rngs, dtype=dtype)
    self.q_norm = LayerNorm(d, rngs=rngs, axis_name='kv', dtype=dtype) if cfg.qk_norm else None
    self.k_norm = LayerNorm(d, rngs=rngs, axis_name='kv', dtype=dtype) if cfg.qk_norm else None
    self.impl = cfg.attention_impl
    self.routing = routing
    # a tower's causal flag (towers.tower_config; the same default for every tower)
    self.causal = bool(setting(cfg, 'model.towers.text.causal'))

  def __call__(self, x: jax.Array, mask: jax.Array, region_size: int | None = None,
               trailing_padding: bool = False) -> jax.Array:
    if hasattr(self, 'qkv'):
      qkv = self.qkv(x)                                   # [batch, length, 3, heads, kv]
      q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    else:
      q, kv = self.q(x), self.kv(x)                       # kv [batch, length, 2, kv_heads, kv]
      k, v = kv[:, :, 0], kv[:, :, 1]
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    q = constrain(q, ('batch', 'length', 'heads', 'kv'))
    k = constrain(k, ('batch', 'length', 'heads', 'kv'))
    v = constrain(v, ('batch', 'length', 'heads', 'kv'))
    routing = self.routing
    if routing is not None and region_size is not None:
      routing = (region_size, routing[1])
    o = attend(q, k, v, mask, self.impl, routing, trailing_padding=trailing_padding,
               causal=self.causal)
    o = constrain(o.astype(x.dtype), ('batch', 'length', 'heads', 'kv'))
    return self.out(o)


def attend(q, k, v, mask, impl: str, routing=None, *, trailing_padding: bool = False,
           causal: bool = False) -> jax.Array:
  """`q [batch, length, heads, kv]`, `k, v [batch, length, kv_heads, kv]`, `mask [batch,
  length]` -> `[batch, length, heads, kv]`. `trailing_padding`: the caller knows every mask is
  a prefix of ones (see the module docstring); outputs at padding are then zero. `causal`: each
  token attends to itself and the tokens before it (a causal text tower).

  The XLA path is partitioned by GSPMD like any other op. A Pallas kernel cannot be, so on a
  mesh it runs inside `shard_map` over the batch and head axes (each device attends over its
  own examples and heads, which needs no communication).
  """
  if routing is not None:
    if causal:
      raise ValueError('routed attention layers cannot be causal: drop the layer from '
                       'config.model.routed_attention.layers or the tower\'s causal flag.')
    return attend_routed(q, k, v, mask, impl, *routing)
  impl = kernels.resolve_impl(impl, kernels.ATTENTION_IMPLS, head_dim=q.shape[-1])
  seg, lengths = padding_arguments(mask)
  if trailing_padding:
    lengths = jnp.sum(mask > 0, axis=1, dtype=jnp.int32)
  fn = lambda q, k, v, seg, lengths: kernels.attention(
      q, k, v, impl=impl, segment_ids=None if trailing_padding else seg, lengths=lengths,
      causal=causal)
  return _on_mesh(fn, impl == 'xla', q, k, v, seg, lengths)


def padding_arguments(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`mask [batch, length]` (1 = real, padding anywhere) -> (segment ids `[batch, length]`
  int32: the mask, keeping padding apart; `lengths [batch]` int32: one past the last real token,
  so everything after it is padding the kernels may skip)."""
  real = mask > 0
  last = jnp.max(jnp.where(real, jnp.arange(mask.shape[1])[None] + 1, 0), axis=1)
  return real.astype(jnp.int32), last.astype(jnp.int32)


def attend_routed(q, k, v, mask, impl: str, region_size: int, top_k: int) -> jax.Array:
  """Routed attention between regions of `region_size` consecutive tokens; padding (mask 0,
  and the tail that completes the last region) never reaches a real token.

  The routing is computed here from all heads, before any head sharding, so every mesh routes
  alike; each query region attends to `min(top_k, regions)` routed regions.
  """
  impl = kernels.resolve_routed_impl(impl)
  if k.shape[2] != q.shape[2]:   # grouped-query k/v: the routed kernels take one head count
    k, v = (jnp.repeat(x, q.shape[2] // k.shape[2], axis=2) for x in (k, v))
  length = q.shape[1]
  extra = -length % region_size
  seg = mask.astype(jnp.int32)
  if extra:
    q, k, v = (jnp.pad(x, ((0, 0), (0, extra), (0, 0), (0, 0))) for x in (q, k, v))
    seg = jnp.pad(seg, ((0, 0), (0, extra)))
  top_k = min(top_k, q.shape[1] // region_size)
  routes = kernels.route_blocks(q, k, region_size, top_k, seg)
  fn = lambda q, k, v, seg, routes: kernels.routed(
      q, k, v, impl=impl, block_size=region_size, top_k=top_k, segment_ids=seg, routes=routes)
  return _on_mesh(fn, impl == 'xla', q, k, v, seg, routes)[:, :length]


def _on_mesh(fn, partitionable: bool, q, k, v, seg, *per_example):
  """`fn(q, k, v, seg, *per_example)` as is (XLA, or no mesh), else in `shard_map` over the
  batch and head axes; `per_example` arrays are split over the batch like `seg`. Grouped-query
  k/v whose heads do not split like q's are repeated to q's heads first."""
  ctx = partitioning.current_context()
  if ctx is None or partitionable:
    return fn(q, k, v, seg, *per_example)
  mesh, rules = ctx
  names = ('batch', 'length', 'heads', 'kv')
  spec = partitioning.logical_to_spec(names, rules, mesh, q.shape)
  if k.shape[2] != q.shape[2]:
    kv_spec = partitioning.logical_to_spec(names, rules, mesh, k.shape)
    if kv_spec[2] != spec[2]:
      k, v = (jnp.repeat(x, q.shape[2] // k.shape[2], axis=2) for x in (k, v))
  extra_specs = tuple(P(spec[0], *(None,) * (x.ndim - 1)) for x in per_example)
  return jax.shard_map(fn, mesh=mesh, in_specs=(spec, spec, spec, P(spec[0], spec[1]))
                       + extra_specs, out_specs=spec, check_vma=False)(q, k, v, seg, *per_example)
