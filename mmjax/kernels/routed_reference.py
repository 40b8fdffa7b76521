"""Gather-based pure-JAX bi-level routing attention: the reference for `routed_attention`."""

import math

import jax.numpy as jnp

from mmjax.kernels.block_routing import route_blocks


def routed_attention_reference(q, k, v, *, block_size, top_k, sm_scale=None):
  """BiFormer routing attention `[batch, length, heads, head_dim]`, gathering routed k/v blocks.

  Each query token of block i attends, per head, to the `top_k * block_size` tokens of the key
  blocks routed to block i (see `routing.route_blocks`).
  """
  batch, length, heads, head_dim = q.shape
  sm_scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else sm_scale
  routes = route_blocks(q, k, block_size, top_k)                     # [b, n, top_k]
  blocks = length // block_size
  split = lambda x: x.reshape(batch, blocks, block_size, heads, head_dim)
  take = jnp.arange(batch)[:, None, None]
  k_sel = split(k)[take, routes].reshape(batch, blocks, top_k * block_size, heads, head_dim)
  v_sel = split(v)[take, routes].reshape(batch, blocks, top_k * block_size, heads, head_dim)
  s = jnp.einsum('bnqhd,bnkhd->bnhqk', split(q), k_sel,
                 preferred_element_type=jnp.float32) * sm_scale
  p = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
  p = p / jnp.sum(p, axis=-1, keepdims=True)
  out = jnp.einsum('bnhqk,bnkhd->bnqhd', p.astype(v.dtype), v_sel,
                   preferred_element_type=jnp.float32)
  return out.reshape(batch, length, heads, head_dim).astype(q.dtype)
