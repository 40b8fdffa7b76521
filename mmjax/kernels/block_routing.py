"""BiFormer region routing: which key blocks each query block of a sequence attends to.

A sequence `[batch, length, heads, head_dim]` is cut into `length / block_size` blocks of
consecutive tokens (the caller orders tokens so that a block is a region: a spatial window, a
space-time window, a span of text). A block's descriptor is the mean of its real tokens with all
heads concatenated (`[heads * head_dim]`), so routing never depends on how heads are sharded;
query block i is routed to the `top_k` key blocks whose descriptors have the largest dot product
with its own (ties go to the lower block index). With `segment_ids` (0 = padding), padding
tokens are left out of every descriptor and a key block holding no real token scores -inf, so it
is chosen only when fewer than `top_k` blocks hold real tokens (and then adds nothing, as all its
keys are masked for real queries).
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


def block_descriptors(x, block_size: int, valid=None):
  """Mean over each block's real tokens, heads concatenated: `[batch, blocks, heads * head_dim]`
  float32, and the number of real tokens per block `[batch, blocks]` (valid `[batch, length]`
  bool, None = all real). A block without real tokens gets a zero descriptor."""
  batch, length, heads, head_dim = x.shape
  blocks = length // block_size
  x = x.astype(jnp.float32).reshape(batch, blocks, block_size, heads * head_dim)
  if valid is None:
    return jnp.mean(x, axis=2), jnp.full((batch, blocks), block_size, jnp.float32)
  w = valid.astype(jnp.float32).reshape(batch, blocks, block_size)
  count = jnp.sum(w, axis=2)
  total = jnp.einsum('bnt,bntd->bnd', w, x, precision=jax.lax.Precision.HIGHEST)
  return total / jnp.maximum(count, 1.0)[..., None], count


def route_blocks(q, k, block_size: int, top_k: int, segment_ids=None):
  """Routed key blocks `[batch, q_blocks, top_k]` int32 for q, k `[batch, length, heads, head_dim]`.

  segment_ids `[batch, length]` int (0 = padding) or None. Not differentiated: the routing is
  a stop_gradient choice.
  """
  check_routing(q.shape[1], block_size, top_k, 'route_blocks')
  valid = None if segment_ids is None else segment_ids != 0
  q_desc, _ = block_descriptors(jax.lax.stop_gradient(q), block_size, valid)
  k_desc, k_count = block_descriptors(jax.lax.stop_gradient(k), block_size, valid)
  affinity = jnp.einsum('bid,bjd->bij', q_desc, k_desc, precision=jax.lax.Precision.HIGHEST)
  affinity = jnp.where(k_count[:, None, :] > 0, affinity, -jnp.inf)
  _, routes = jax.lax.top_k(affinity, top_k)   # equal values: lower index first
  return routes.astype(jnp.int32)
