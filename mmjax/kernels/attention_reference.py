"""Pure-JAX softmax attention: the reference for the kernels and the 'xla' implementation."""

import math

import jax.numpy as jnp


def attention_reference(q, k, v, *, segment_ids=None, lengths=None, causal=False,
                        sm_scale=None):
  """Softmax attention with a float32 softmax; returns `[batch, q_len, heads, head_dim]`.

  q: `[batch, q_len, heads, head_dim]`; k, v: `[batch, kv_len, kv_heads, head_dim]` with
  kv_heads dividing heads (query head h uses kv head h // (heads / kv_heads)).
  segment_ids `[batch, length]`: token i attends to j only if their ids are equal.
  lengths `[batch]`: positions >= lengths[b] are padding (attend and are attended by nothing).
  causal: token i attends to j <= i. A query with no allowed key gets zeros.
  """
  batch, q_len, heads, head_dim = q.shape
  kv_len, kv_heads = k.shape[1], k.shape[2]
  group = heads // kv_heads
  sm_scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else sm_scale
  qg = q.reshape(batch, q_len, kv_heads, group, head_dim)
  s = jnp.einsum('bqhgd,bkhd->bhgqk', qg, k, preferred_element_type=jnp.float32) * sm_scale
  s = s.reshape(batch, heads, q_len, kv_len)
  mask = None
  if segment_ids is not None:
    mask = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
  if lengths is not None:
    q_ok = jnp.arange(q_len)[None, :] < lengths[:, None]
    k_ok = jnp.arange(kv_len)[None, :] < lengths[:, None]
    both = q_ok[:, None, :, None] & k_ok[:, None, None, :]
    mask = both if mask is None else jnp.logical_and(mask, both)
  if causal:
    tril = jnp.tril(jnp.ones((q_len, kv_len), bool))
    mask = tril if mask is None else jnp.logical_and(mask, tril)
  if mask is None:
    p = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
  else:
    s = jnp.where(mask, s, -1e30)
    p = jnp.where(mask, jnp.exp(s - jnp.max(s, axis=-1, keepdims=True)), 0.0)
  total = jnp.sum(p, axis=-1, keepdims=True)
  p = p / jnp.where(total == 0.0, 1.0, total)
  p = p.reshape(batch, kv_heads, group, q_len, kv_len).astype(v.dtype)
  out = jnp.einsum('bhgqk,bkhd->bqhgd', p, v, preferred_element_type=jnp.float32)
  return out.reshape(batch, q_len, heads, head_dim).astype(q.dtype)
