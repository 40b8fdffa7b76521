"""Multi-head self-attention with optional QK-norm.

The attention itself is chosen by `config.model.attention_impl` (`auto | xla | pallas | cudnn`):
`xla` (and `auto` on CPU) is `jax.nn.dot_product_attention`; the others are `mmjax.kernels`.
Layers listed in `config.model.routed_attention.layers` use BiFormer bi-level routed attention.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.models.layers import DenseGeneral, LayerNorm
from mmjax.train.partitioning import constrain


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
  """`q, k, v [batch, length, heads, kv]`, `mask [batch, length]` -> `[batch, length, heads, kv]`."""
  if routing is not None:
    from mmjax import kernels
    block_size, top_k = routing
    return kernels.routed_attention(q, k, v, block_size=block_size, top_k=top_k)
  if impl == 'xla' or (impl == 'auto' and jax.default_backend() == 'cpu'):
    seg = mask.astype(jnp.int32)
    allowed = seg[:, None, :, None] == seg[:, None, None, :]          # [batch, 1, q, k]
    return jax.nn.dot_product_attention(q, k, v, mask=allowed, implementation='xla')
  from mmjax import kernels
  return kernels.attention(q, k, v, impl=impl, segment_ids=mask.astype(jnp.int32))
