"""Flash attention: tiled online-softmax attention with a Pallas forward and backward.

`flash_attention(q, k, v)` takes `[batch, length, heads, head_dim]` tensors, pads lengths to the
block size and masks the padding inside, and returns `[batch, q_length, heads, head_dim]` in
q's dtype. Accumulation is float32. The pure-JAX reference is `attention_reference`.
k and v may have fewer heads than q (grouped-query attention: `kv_heads` dividing `heads`);
they are read in place, never repeated. With per-example `lengths` or `segment_ids`, only the
(query block, key block) pairs that some query may attend are visited (`attention_skip`).
"""

import math

import jax.numpy as jnp

from mmjax.kernels import backend as backend_lib
from mmjax.kernels.attention_tiles import Tiling
from mmjax.kernels.attention_skip import masked_segments, valid_blocks
from mmjax.kernels.block_pairs import dense_pairs, masked_pairs
from mmjax.kernels.block_sparse_attention import block_sparse_attention


def check_qkv(q, k, v, name='attention'):
  """Raises a ValueError unless q, k, v are [batch, length, heads, head_dim] of one float dtype."""
  for label, x in (('q', q), ('k', k), ('v', v)):
    if x.ndim != 4:
      raise ValueError(f'{name}: {label} must be [batch, length, heads, head_dim], got shape '
                       f'{x.shape}.')
  if not (q.dtype == k.dtype == v.dtype) or not jnp.issubdtype(q.dtype, jnp.floating):
    raise ValueError(f'{name}: q, k, v must share one floating dtype, got {q.dtype}, '
                     f'{k.dtype}, {v.dtype}.')
  if k.shape != v.shape:
    raise ValueError(f'{name}: k and v shapes differ: {k.shape} vs {v.shape}.')
  if (q.shape[0], q.shape[3]) != (k.shape[0], k.shape[3]):
    raise ValueError(f'{name}: q {q.shape} and k {k.shape} must agree in batch and head_dim.')
  if q.shape[2] % k.shape[2]:
    raise ValueError(f'{name}: k/v heads ({k.shape[2]}) must divide q heads ({q.shape[2]}) '
                     '(grouped-query attention).')


def _check_block(name, value, backend):
  if not isinstance(value, int) or value <= 0:
    raise ValueError(f'{name} must be a positive int, got {value!r}.')
  if backend == 'tpu' and value % 128:
    raise ValueError(f'{name}={value}: on TPU blocks must be multiples of 128.')
  if backend == 'gpu' and (value < 16 or value & (value - 1)):
    raise ValueError(f'{name}={value}: on GPU blocks must be powers of two >= 16.')
  return value


def default_block(length: int, backend: str) -> int:
  """Block size along a sequence of `length` tokens for `backend`."""
  if backend == 'tpu':   # largest lane-aligned block that pads the sequence by < 1/8
    padded = backend_lib.round_up(length, 128)
    for block in (512, 256):
      if backend_lib.round_up(length, block) * 8 <= padded * 9:
        return block
    return 128
  if backend == 'gpu':
    return min(64, max(16, backend_lib.next_power_of_2(length)))
  return min(128, backend_lib.round_up(length, 8))


def _pad_axis(x, axis, size, value=0):
  pad = size - x.shape[axis]
  if pad == 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, pad)
  return jnp.pad(x, widths, constant_values=value)


def flash_attention(q, k, v, *, segment_ids=None, lengths=None, causal=False, sm_scale=None,
                    block_q=None, block_k=None, interpret=None, backend=None):
  """Softmax attention of q `[batch, q_len, heads, head_dim]` over k, v
  `[batch, kv_len, kv_heads, head_dim]` (kv_heads dividing heads: query head h uses kv head
  h // (heads / kv_heads)).

  segment_ids `[batch, length]` int: token i attends to j only if their ids are equal.
  lengths `[batch]` int: tokens at positions >= lengths[b] are padding: no query attends them
  and they attend nothing (zeros out). Both, like `causal`, need q_len == kv_len.
  sm_scale defaults to 1/sqrt(head_dim). A query with no allowed key gets zeros.
  backend: 'cpu' | 'gpu' | 'tpu' (None = jax.default_backend()).
  """
  check_qkv(q, k, v, 'flash_attention')
  batch, q_len, heads, head_dim = q.shape
  kv_len = k.shape[1]
  masked = segment_ids is not None or lengths is not None
  if (causal or masked) and q_len != kv_len:
    raise ValueError(f'flash_attention: causal masking, segment_ids and lengths need equal q '
                     f'and kv lengths, got {q_len} and {kv_len}.')
  if lengths is not None and (lengths.shape != (batch,)
                              or not jnp.issubdtype(lengths.dtype, jnp.integer)):
    raise ValueError(f'flash_attention: lengths must be int [batch] = [{batch}], got '
                     f'{lengths.dtype} {lengths.shape}.')
  if segment_ids is not None:
    if segment_ids.shape != (batch, q_len) or not jnp.issubdtype(segment_ids.dtype, jnp.integer):
      raise ValueError(f'flash_attention: segment_ids must be int [batch, length] = '
                       f'{(batch, q_len)}, got {segment_ids.dtype} {segment_ids.shape}.')
  backend = backend_lib.resolve_backend(backend)
  interpret = backend_lib.resolve_interpret(interpret, backend)
  sm_scale = 1.0 / math.sqrt(head_dim) if sm_scale is None else float(sm_scale)
  bq = _check_block('block_q', block_q or default_block(q_len, backend), backend)
  bk = _check_block('block_k', block_k or default_block(kv_len, backend), backend)

  q_pad, kv_pad = backend_lib.round_up(q_len, bq), backend_lib.round_up(kv_len, bk)
  if causal or masked:   # one padded length for both sides
    q_pad = kv_pad = backend_lib.round_up(q_len, math.lcm(bq, bk))
  d_pad = max(16, backend_lib.next_power_of_2(head_dim)) if backend == 'gpu' else head_dim
  q, k, v = (_pad_axis(_pad_axis(x, 1, n), 3, d_pad) for x, n in ((q, q_pad), (k, kv_pad),
                                                                   (v, kv_pad)))
  q_seg = k_seg = None
  if masked:   # padding and segments: per-example tables of the non-empty block pairs
    q_seg, k_seg, real = masked_segments(segment_ids, lengths, batch, q_len, q_pad)
    pairs = masked_pairs(valid_blocks(q_seg, real, bq, bk, causal))
  else:
    pairs = dense_pairs(q_pad // bq, kv_pad // bk, bq, bk, causal)

  driver = 'tpu' if backend == 'tpu' else 'gpu'
  tiling = Tiling(block_q=bq, block_k=bk, sm_scale=sm_scale, causal=causal,
                  kv_len=kv_len if kv_pad > kv_len else None, kv_block_valid=None,
                  driver=driver, interpret=interpret, batched_tables=masked,
                  num_warps=4 if d_pad <= 64 else 8, q_per_kv=heads // k.shape[2])
  if driver == 'tpu':
    q, k, v = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))
  out = block_sparse_attention(tiling, q, k, v, q_seg, k_seg, pairs)
  if driver == 'tpu':
    out = jnp.swapaxes(out, 1, 2)
  return out[:, :q_len, :, :head_dim]

