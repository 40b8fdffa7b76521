"""Bi-level routing attention (BiFormer) as block-sparse flash attention.

Routing (`routing.route_blocks`) picks, per query block, `top_k` key blocks; the kernel then
attends each query block to exactly those blocks, visiting the routed (query block, key block)
pairs: scalar-prefetched index tables driving the BlockSpecs on TPU, an index tensor read
inside the kernel on GPU. The gather-based reference is `routed_attention_reference`.
"""

import math

import jax.numpy as jnp

from mmjax.kernels import backend as backend_lib
from mmjax.kernels.attention_tiles import Tiling
from mmjax.kernels.block_pairs import routed_pairs
from mmjax.kernels.block_routing import check_routing, route_blocks
from mmjax.kernels.block_sparse_attention import block_sparse_attention
from mmjax.kernels.flash_attention import check_qkv
from mmjax.kernels.routed_reference import routed_attention_reference


def padded_block(block_size: int, backend: str) -> int:
  """Kernel tile for a routing block: sublane-aligned on TPU, a power of two >= 16 on GPU."""
  if backend == 'tpu':
    return backend_lib.round_up(block_size, 8)
  if backend == 'gpu':
    return max(16, backend_lib.next_power_of_2(block_size))
  return block_size


def routed_attention(q, k, v, *, block_size, top_k, segment_ids=None, routes=None,
                     sm_scale=None, interpret=None, backend=None):
  """Routing attention `[batch, length, heads, head_dim]` for q, k, v of that same shape.

  `length` must be a multiple of `block_size`; each query token of block i attends, head by
  head, over the `top_k * block_size` tokens of block i's routed key blocks. segment_ids
  `[batch, length]` int (0 = padding): a query attends only to keys of its own segment, and
  padding stays out of the routing (see `routing.route_blocks`). routes `[batch, blocks, top_k]`
  int32 (distinct per row) overrides the routing, e.g. routes computed from all heads before the
  heads are split over devices. sm_scale defaults to 1/sqrt(head_dim). Gradients reach q, k, v
  through the attention, not the routing. backend: 'cpu' | 'gpu' | 'tpu' (None = default).
  """
  check_qkv(q, k, v, 'routed_attention')
  if q.shape != k.shape:
    raise ValueError(f'routed_attention: q and k must have the same shape, got {q.shape} and '
                     f'{k.shape}.')
  batch, length, heads, head_dim = q.shape
  check_routing(length, block_size, top_k)
  if backend_lib.use_reference():
    return routed_attention_reference(q, k, v, block_size=block_size, top_k=top_k,
                                      sm_scale=sm_scale)
  backend = backend_lib.resolve_backend(backend)
  interpret = backend_lib.resolve_interpret(interpret, backend)
  sm_scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else float(sm_scale)
  num_blocks = length // block_size
  if routes is None:
    routes = route_blocks(q, k, block_size, top_k, segment_ids)      # [b, blocks, top_k]
  elif routes.shape != (batch, num_blocks, top_k):
    raise ValueError(f'routed_attention: routes must be [batch, blocks, top_k] = '
                     f'{(batch, num_blocks, top_k)}, got {routes.shape}.')

  tile = padded_block(block_size, backend)
  d_pad = max(16, backend_lib.next_power_of_2(head_dim)) if backend == 'gpu' else head_dim

  def to_tiles(x):   # [b, length, h, d] -> [b, blocks * tile, h, d_pad]
    x = x.reshape(batch, num_blocks, block_size, heads, head_dim)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, tile - block_size), (0, 0), (0, d_pad - head_dim)))
    x = x.reshape(batch, num_blocks * tile, heads, d_pad)
    return jnp.swapaxes(x, 1, 2) if backend == 'tpu' else x

  seg = None
  if segment_ids is not None:   # [b, length] -> [b, blocks * tile]; tile padding is masked anyway
    seg = segment_ids.astype(jnp.int32).reshape(batch, num_blocks, block_size)
    seg = jnp.pad(seg, ((0, 0), (0, 0), (0, tile - block_size))).reshape(batch, -1)

  tiling = Tiling(block_q=tile, block_k=tile, sm_scale=sm_scale, causal=False, kv_len=None,
                  kv_block_valid=block_size if tile > block_size else None,
                  driver='tpu' if backend == 'tpu' else 'gpu', interpret=interpret,
                  batched_tables=True, num_warps=4 if d_pad <= 64 else 8)
  out = block_sparse_attention(tiling, to_tiles(q), to_tiles(k), to_tiles(v), seg, seg,
                               routed_pairs(routes, num_blocks))
  if backend == 'tpu':
    out = jnp.swapaxes(out, 1, 2)
  out = out.reshape(batch, num_blocks, tile, heads, d_pad)[:, :, :block_size, :, :head_dim]
  return out.reshape(batch, length, heads, head_dim)
