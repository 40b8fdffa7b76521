"""Multi-head self-attention with optional QK-norm.

The attention itself is chosen by `config.model.attention_impl` (`auto | xla | pallas | cudnn`,
see `mmjax.kernels.select`): `auto` is the Pallas flash kernel on TPU, cuDNN on GPU, the XLA
reference on CPU.
Layers listed in `config.model.routed_attention.layers` use BiFormer bi-level routed attention
between regions of consecutive tokens (`regions.py` says how each modality's tokens are laid
out); there `auto` is the Pallas kernel on TPU only, the XLA reference elsewhere.
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


class SelfAttention(nnx.Module):
  """`[batch, length, embed]` -> same; `mask [batch, length]` (1 = real token) keeps padding
  out. `routing=(block_size, top_k)` switches the layer to bi-level routed attention; a call's
  `region_size` (the modality's region, in tokens) replaces the block size."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype, routing: tuple[int, int] | None = None):
    h, d = cfg.num_heads, cfg.width // cfg.num_heads
    self.qkv = DenseGeneral((cfg.width,), (3, h, d), ('embed', None, 'heads', 'kv'),
                            rngs=rngs, dtype=dtype)
    self.out = DenseGeneral((h, d), (cfg.width,), ('heads', 'kv', 'embed'), rngs=rngs, dtype=dtype)
    self.q_norm = LayerNorm(d, rngs=rngs, axis_name='kv', dtype=dtype) if cfg.qk_norm else None
    self.k_norm = LayerNorm(d, rngs=rngs, axis_name='kv', dtype=dtype) if cfg.qk_norm else None
    self.impl = cfg.attention_impl
    self.routing = routing
    self.causal = bool(cfg.get('causal', False))   # a tower's causal flag (towers.tower_config)

  def __call__(self, x: jax.Array, mask: jax.Array, region_size: int | None = None) -> jax.Array:
    qkv = self.qkv(x)                                     # [batch, length, 3, heads, kv]
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    q = constrain(q, ('batch', 'length', 'heads', 'kv'))
    k = constrain(k, ('batch', 'length', 'heads', 'kv'))
    v = constrain(v, ('batch', 'length', 'heads', 'kv'))
    routing = self.routing
    if routing is not None and region_size is not None:
      routing = (region_size, routing[1])
    o = attend(q, k, v, mask, self.impl, routing, causal=self.causal)
    o = constrain(o.astype(x.dtype), ('batch', 'length', 'heads', 'kv'))
    return self.out(o)


def attend(q, k, v, mask, impl: str, routing=None, causal: bool = False) -> jax.Array:
  """`q, k, v [batch, length, heads, kv]`, `mask [batch, length]` -> `[batch, length, heads, kv]`.

  The XLA path is partitioned by GSPMD like any other op. A Pallas kernel cannot be, so on a
  mesh it runs inside `shard_map` over the batch and head axes (each device attends over its
  own examples and heads, which needs no communication).
  """
  if routing is not None:
    if causal:
      raise ValueError('routed attention layers cannot be causal: drop the layer from '
                       'config.model.routed_attention.layers or the tower\'s causal flag.')
    return attend_routed(q, k, v, mask, impl, *routing)
  impl = kernels.resolve_impl(impl, kernels.ATTENTION_IMPLS)
  fn = lambda q, k, v, seg: kernels.attention(q, k, v, impl=impl, segment_ids=seg, causal=causal)
  return _on_mesh(fn, impl == 'xla', q, k, v, mask.astype(jnp.int32))


def attend_routed(q, k, v, mask, impl: str, region_size: int, top_k: int) -> jax.Array:
  """Routed attention between regions of `region_size` consecutive tokens; padding (mask 0,
  and the tail that completes the last region) never reaches a real token.

  The routing is computed here from all heads, before any head sharding, so every mesh routes
  alike; each query region attends to `min(top_k, regions)` routed regions.
  """
  impl = kernels.resolve_routed_impl(impl)
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
  batch and head axes; `per_example` arrays are split over the batch like `seg`."""
  ctx = partitioning.current_context()
  if ctx is None or partitionable:
    return fn(q, k, v, seg, *per_example)
  mesh, rules = ctx
  spec = partitioning.logical_to_spec(('batch', 'length', 'heads', 'kv'), rules, mesh, q.shape)
  extra_specs = tuple(P(spec[0], *(None,) * (x.ndim - 1)) for x in per_example)
  return jax.shard_map(fn, mesh=mesh, in_specs=(spec, spec, spec, P(spec[0], spec[1]))
                       + extra_specs, out_specs=spec, check_vma=False)(q, k, v, seg, *per_example)
