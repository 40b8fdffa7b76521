"""Differentiable block-sparse flash attention: the core under flash and routed attention.

Inputs are already padded and in the driver's layout (see `attention_forward`); the public
wrappers handle padding, layouts and validation. Gradients flow to q, k, v only.
"""

import functools

import jax
import jax.numpy as jnp

from mmjax.kernels.attention_backward import attention_backward
from mmjax.kernels.attention_forward import attention_forward
from mmjax.kernels.attention_tiles import Tiling
from mmjax.kernels.block_pairs import BlockPairs


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def block_sparse_attention(t: Tiling, q, k, v, q_seg, k_seg, pairs: BlockPairs):
  """Attention of each query block over its paired key blocks; output like q."""
  return attention_forward(t, q, k, v, q_seg, k_seg, pairs)[0]


def _forward(t, q, k, v, q_seg, k_seg, pairs):
  out, lse = attention_forward(t, q, k, v, q_seg, k_seg, pairs)
  return out, (q, k, v, q_seg, k_seg, pairs, out, lse)


def _backward(t, residuals, d_out):
  q, k, v, q_seg, k_seg, pairs, out, lse = residuals
  prod = out.astype(jnp.float32) * d_out.astype(jnp.float32)
  delta = jnp.sum(prod, axis=-1)   # [batch, heads, length] ('tpu') or [batch, length, heads]
  if t.driver != 'tpu':
    delta = jnp.swapaxes(delta, 1, 2)
  dq, dk, dv = attention_backward(t, q, k, v, q_seg, k_seg, pairs, d_out.astype(q.dtype), lse,
                                  delta)
  none = jax.tree.map(lambda _: None, (q_seg, k_seg, pairs))
  return (dq, dk, dv, *none)


block_sparse_attention.defvjp(_forward, _backward)
