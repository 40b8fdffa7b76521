"""Pure-JAX softmax attention: the reference for the kernels and the 'xla' implementation."""

import math

import jax.numpy as jnp


def attention_reference(q, k, v, *, segment_ids=None, causal=False, sm_scale=None):
  """Softmax attention with a float32 softmax; returns `[batch, q_len, heads, head_dim]`.

  q: `[batch, q_len, heads, head_dim]`; k, v: `[batch, kv_len, heads, head_dim]`.
  segment_ids `[batch, length]`: token i attends to j only if their ids are equal.
  causal: token i attends to j <= i. A query with no allowed key gets zeros.
  """
  sm_scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
  s = jnp.einsum('bqhd,bkhd->bhqk', q, k, preferred_element_type=jnp.float32) * sm_scale
  mask = None
  if segment_ids is not None:
    mask = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
  if causal:
    tril = jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))
    mask = tril if mask is None else jnp.logical_and(mask, tril)
  if mask is None:
    p = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
  else:
    s = jnp.where(mask, s, -1e30)
    p = jnp.where(mask, jnp.exp(s - jnp.max(s, axis=-1, keepdims=True)), 0.0)
  total = jnp.sum(p, axis=-1, keepdims=True)
  p = p / jnp.where(total == 0.0, 1.0, total)
  out = jnp.einsum('bhqk,bkhd->bqhd', p.astype(v.dtype), v, preferred_element_type=jnp.float32)
  return out.astype(q.dtype)
