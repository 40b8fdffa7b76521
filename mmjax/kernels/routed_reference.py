"""Gather-based pure-JAX bi-level routing attention: the reference for `routed_attention`, and
the implementation the model runs with `attention_impl='xla'` (partitioned by GSPMD)."""

import math

import jax
import jax.numpy as jnp

from mmjax.kernels.block_routing import check_routing, route_blocks


def routed_attention_reference(q, k, v, *, block_size, top_k, segment_ids=None, routes=None,
                               sm_scale=None):
  """BiFormer routing attention `[batch, length, heads, head_dim]`, gathering routed k/v blocks.

  Each query token of block i attends, per head, to the `top_k * block_size` tokens of the key
  blocks routed to block i (`routes [batch, blocks, top_k]`, by default `routing.route_blocks`).
  segment_ids `[batch, length]` (0 = padding): a query attends only to keys of its own segment,
  so real tokens never see padding; a query with no such key gets zeros.
  """
  batch, length, heads, head_dim = q.shape
  check_routing(length, block_size, top_k, 'routed_attention_reference')
  sm_scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else sm_scale
  if routes is None:
    routes = route_blocks(q, k, block_size, top_k, segment_ids)     # [b, n, top_k]
  blocks = length // block_size
  split = lambda x: x.reshape(batch, blocks, block_size, *x.shape[2:])
  gather = jax.vmap(lambda x, r: x[r].reshape(blocks, top_k * block_size, *x.shape[2:]))
  k_sel, v_sel = gather(split(k), routes), gather(split(v), routes)  # [b, n, top_k * bs, h, d]
  s = jnp.einsum('bnqhd,bnkhd->bnhqk', split(q), k_sel,
                 preferred_element_type=jnp.float32) * sm_scale
  if segment_ids is not None:
    seg = segment_ids.astype(jnp.int32)
    allowed = split(seg)[:, :, None, :, None] == gather(split(seg), routes)[:, :, None, None, :]
    s = jnp.where(allowed, s, -1e30)
    p = jnp.where(allowed, jnp.exp(s - jnp.max(s, axis=-1, keepdims=True)), 0.0)
  else:
    p = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
  total = jnp.sum(p, axis=-1, keepdims=True)
  p = p / jnp.where(total == 0.0, 1.0, total)
  out = jnp.einsum('bnhqk,bnkhd->bnqhd', p.astype(v.dtype), v_sel,
                   preferred_element_type=jnp.float32)
  return out.reshape(batch, length, heads, head_dim).astype(q.dtype)
