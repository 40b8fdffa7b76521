"""Multi-head self-attention with optional QK-norm.

The attention itself is chosen by `config.model.attention_impl` (`auto | xla | pallas | cudnn`,
see `mmjax.kernels.select`): `auto` is the Pallas flash kernel on GPU/TPU, the XLA reference on CPU.
Layers listed in `config.model.routed_attention.layers` use BiFormer bi-level routed attention.
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
  out. `routing=(block_size, top_k)` switches the layer to bi-level routed attention."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype, routing: tuple[int, int] | None = None):
    h, d = cfg.num_heads, cfg.width // cfg.num_heads
    self.qkv = DenseGeneral((cfg.width,), (3, h, d), ('embed', None, 'heads', 'kv'),
                            rngs=rngs, dtype=dtype)
    self.out = DenseGeneral((h, d), (cfg.width,), ('heads', 'kv', 'embed'), rngs=rngs, dtype=dtype)
    self.q_norm = LayerNorm(d, rngs=rngs, axis_name='kv', dtype=dtype) if cfg.qk_norm else None
    self.k_norm = LayerNorm(d, rngs=rngs, axis_name='kv', dtype=dtype) if cfg.qk_norm else None
    self.impl = cfg.attention_impl
    self.routing = routing

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    qkv = self.qkv(x)                                     # [batch, length, 3, heads, kv]
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    q = constrain(q, ('batch', 'length', 'heads', 'kv'))
    k = constrain(k, ('batch', 'length', 'heads', 'kv'))
    v = constrain(v, ('batch', 'length', 'heads', 'kv'))
    o = attend(q, k, v, mask, self.impl, self.routing)
    o = constrain(o.astype(x.dtype), ('batch', 'length', 'heads', 'kv'))
    return self.out(o)


def attend(q, k, v, mask, impl: str, routing=None) -> jax.Array:
  """`q, k, v [batch, length, heads, kv]`, `mask [batch, length]` -> `[batch, length, heads, kv]`.

  The XLA path is partitioned by GSPMD like any other op. A Pallas kernel cannot be, so on a
  mesh it runs inside `shard_map` over the batch and head axes (each device attends over its
  own examples and heads, which needs no communication).
  """
  impl = kernels.resolve_impl(impl, kernels.ATTENTION_IMPLS)
  seg = mask.astype(jnp.int32)
  if routing is not None:
    block_size, top_k = routing
    fn = lambda q, k, v, seg: kernels.routed_attention(q, k, v, block_size=block_size,
                                                       top_k=top_k)
  else:
    fn = lambda q, k, v, seg: kernels.attention(q, k, v, impl=impl, segment_ids=seg)
  ctx = partitioning.current_context()
  if ctx is None or (impl == 'xla' and routing is None):
    return fn(q, k, v, seg)
  mesh, rules = ctx
  spec = partitioning.logical_to_spec(('batch', 'length', 'heads', 'kv'), rules, mesh, q.shape)
  return jax.shard_map(fn, mesh=mesh, in_specs=(spec, spec, spec, P(spec[0], spec[1])),
                       out_specs=spec, check_vma=False)(q, k, v, seg)
