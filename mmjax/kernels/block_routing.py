"""BiFormer region routing: which key blocks each query block of a sequence attends to.

A sequence `[batch, length, heads, head_dim]` is cut into `length / block_size` blocks of
consecutive tokens. A block's descriptor is the mean of its tokens with all heads concatenated
(`[heads * head_dim]`); query block i is routed to the `top_k` key blocks whose descriptors
have the largest dot product with its own (ties go to the lower block index).
"""

import jax
import jax.numpy as jnp


def check_routing(length: int, block_size, top_k, name='routed_attention'):
  """Raises a ValueError unless `length` splits into blocks and 1 <= top_k <= blocks."""
  if not isinstance(block_size, int) or block_size <= 0:
    raise ValueError(f'{name}: block_size must be a positive int, got {block_size!r}.')
  if length % block_size:
    raise ValueError(f'{name}: length {length} is not divisible by block_size {block_size}; '
                     'pad the sequence or pick a block size that divides it.')
  num_blocks = length // block_size
  if not isinstance(top_k, int) or not 1 <= top_k <= num_blocks:
    raise ValueError(f'{name}: top_k must be an int in [1, {num_blocks}] (the number of '
                     f'blocks of {block_size} tokens in {length}), got {top_k!r}.')


def block_descriptors(x, block_size: int):
  """Mean over each block's tokens, heads concatenated: `[batch, blocks, heads * head_dim]` f32."""
  batch, length, heads, head_dim = x.shape
  x = x.astype(jnp.float32).reshape(batch, length // block_size, block_size, heads * head_dim)
  return jnp.mean(x, axis=2)


def route_blocks(q, k, block_size: int, top_k: int):
  """Routed key blocks `[batch, q_blocks, top_k]` int32 for q, k `[batch, length, heads, head_dim]`.

  Not differentiated: the routing is a stop_gradient choice.
  """
  check_routing(q.shape[1], block_size, top_k, 'route_blocks')
  q_desc = block_descriptors(jax.lax.stop_gradient(q), block_size)
  k_desc = block_descriptors(jax.lax.stop_gradient(k), block_size)
  affinity = jnp.einsum('bid,bjd->bij', q_desc, k_desc, precision=jax.lax.Precision.HIGHEST)
  _, routes = jax.lax.top_k(affinity, top_k)   # equal values: lower index first
  return routes.astype(jnp.int32)
