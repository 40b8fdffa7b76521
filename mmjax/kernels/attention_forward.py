"""Forward pass of block-sparse flash attention over a list of (query block, key block) pairs.

Layouts: the 'gpu' driver reads q/k/v as `[batch, length, heads, head_dim]`; the 'tpu' driver as
`[batch, heads, length, head_dim]` (so that a tile's last two dims are `[block, head_dim]`).
Segment ids come as `q_seg [batch, q_len]`, `k_seg [batch, kv_len]` int32 (or None). Returns
the output in q's layout and dtype and the logsumexp `[batch, heads, q_len]` float32.
"""

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

from mmjax.kernels import attention_tiles as tiles
from mmjax.kernels.block_pairs import BlockPairs


def attention_forward(t: tiles.Tiling, q, k, v, q_seg, k_seg, pairs: BlockPairs):
  """Returns (out like q, lse [batch, heads, q_len] float32)."""
  q_seg, k_seg = tiles.segment_layouts(t, q_seg, k_seg)
  if t.driver == 'tpu':
    return _forward_tpu(t, q, k, v, q_seg, k_seg, pairs)
  return _forward_gpu(t, q, k, v, q_seg, k_seg, pairs)


def _gpu_kernel(k_by_q_ref, start_ref, q_ref, k_ref, v_ref, q_seg_ref, k_seg_ref,
                o_ref, lse_ref, *, t: tiles.Tiling):
  i = pl.program_id(0)
  q = q_ref[...]
  q_seg = None if q_seg_ref is None else q_seg_ref[...]

  def body(p, carry):
    j = k_by_q_ref[p]
    rows = pl.ds(pl.multiple_of(j * t.block_k, t.block_k), t.block_k)
    k_seg = None if k_seg_ref is None else k_seg_ref[:, rows]
    mask = tiles.tile_mask(t, i, j, q_seg, k_seg)
    s = tiles.scores(t, q, k_ref[rows, :], mask)
    return tiles.softmax_step(s, mask, v_ref[rows, :], *carry)

  carry = jax.lax.fori_loop(start_ref[i], start_ref[i + 1], body,
                            tiles.softmax_init(t, q.shape[-1]))
  out, lse = tiles.softmax_finish(*carry)
  o_ref[...] = out.astype(o_ref.dtype)
  lse_ref[...] = lse[:, 0]


def _forward_gpu(t, q, k, v, q_seg, k_seg, pairs):
  batch, q_len, heads, head_dim = q.shape
  kv_len = k.shape[1]
  num_q_blocks = q_len // t.block_q
  row = functools.partial(tiles.table_row, t)
  q_tile = pl.BlockSpec((None, t.block_q, None, head_dim), lambda i, b, h: (b, i, h, 0))
  kv_full = pl.BlockSpec((None, kv_len, None, head_dim),
                         lambda i, b, h: (b, 0, tiles.kv_head(t, h), 0))
  in_specs = [
      pl.BlockSpec((None, pairs.k_by_q.shape[1]), lambda i, b, h: (row(b), 0)),
      pl.BlockSpec((None, num_q_blocks + 1), lambda i, b, h: (row(b), 0)),
      q_tile, kv_full, kv_full,
      None if q_seg is None else pl.BlockSpec((None, t.block_q, 1), lambda i, b, h: (b, i, 0)),
      None if k_seg is None else pl.BlockSpec((None, 1, kv_len), lambda i, b, h: (b, 0, 0)),
  ]
  out_specs = [q_tile,
               pl.BlockSpec((None, None, t.block_q), lambda i, b, h: (b, h, i))]
  out_shape = [jax.ShapeDtypeStruct(q.shape, q.dtype),
               jax.ShapeDtypeStruct((batch, heads, q_len), jnp.float32)]
  return pl.pallas_call(
      functools.partial(_gpu_kernel, t=t),
      grid=(num_q_blocks, batch, heads),
      in_specs=in_specs, out_specs=out_specs, out_shape=out_shape,
      compiler_params=pltriton.CompilerParams(num_warps=t.num_warps, num_stages=t.num_stages),
      interpret=t.interpret, name='attention_fwd',
  )(pairs.k_by_q, pairs.start_q, q, k, v, q_seg, k_seg)


def _tpu_kernel(q_by_q_ref, k_by_q_ref, start_ref, q_ref, k_ref, v_ref, q_seg_ref, k_seg_ref,
                o_ref, lse_ref, m_ref, l_ref, acc_ref, *, t: tiles.Tiling, num_pairs: int):
  r, p = tiles.table_row(t, pl.program_id(0)), pl.program_id(2)
  i, j = q_by_q_ref[r, p], k_by_q_ref[r, p]
  first, last = tiles.pair_flags(q_by_q_ref, r, p, num_pairs)

  @pl.when(first)
  def _init():
    m_ref[...], l_ref[...], acc_ref[...] = tiles.softmax_init(t, acc_ref.shape[-1])

  @pl.when(p < tiles.pair_count(start_ref, r))
  def _step():
    q_seg = None if q_seg_ref is None else q_seg_ref[0][:, None]
    k_seg = None if k_seg_ref is None else k_seg_ref[...]
    mask = tiles.tile_mask(t, i, j, q_seg, k_seg)
    s = tiles.scores(t, q_ref[...], k_ref[...], mask)
    m_ref[...], l_ref[...], acc_ref[...] = tiles.softmax_step(
        s, mask, v_ref[...], m_ref[...], l_ref[...], acc_ref[...])

  @pl.when(last)
  def _finish():
    out, lse = tiles.softmax_finish(m_ref[...], l_ref[...], acc_ref[...])
    o_ref[...] = out.astype(o_ref.dtype)
    lse_ref[...] = lse.reshape(1, t.block_q)


def _forward_tpu(t, q, k, v, q_seg, k_seg, pairs):
  batch, heads, q_len, head_dim = q.shape
  num_pairs = pairs.q_by_q.shape[1]
  row = functools.partial(tiles.table_row, t)

  def q_map(b, h, p, qb, kb, st):
    return b, h, qb[row(b), p], 0

  def k_map(b, h, p, qb, kb, st):
    return b, tiles.kv_head(t, h), kb[row(b), p], 0

  q_tile = pl.BlockSpec((None, None, t.block_q, head_dim), q_map)
  k_tile = pl.BlockSpec((None, None, t.block_k, head_dim), k_map)
  in_specs = [
      q_tile, k_tile, k_tile,
      None if q_seg is None else pl.BlockSpec(
          (None, None, 1, t.block_q), lambda b, h, p, qb, kb, st: (b, qb[row(b), p], 0, 0)),
      None if k_seg is None else pl.BlockSpec(
          (None, 1, t.block_k), lambda b, h, p, qb, kb, st: (b, 0, kb[row(b), p])),
  ]
  # lse as rows [batch, heads, q_blocks, 1, block_q]: TPU-legal for any block_q, lane-dense.
  out_specs = [q_tile, pl.BlockSpec((None, None, None, 1, t.block_q),
                                    lambda b, h, p, qb, kb, st: (b, h, qb[row(b), p], 0, 0))]
  out_shape = [jax.ShapeDtypeStruct(q.shape, q.dtype),
               jax.ShapeDtypeStruct((batch, heads, q_len // t.block_q, 1, t.block_q),
                                    jnp.float32)]
  grid_spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=3, grid=(batch, heads, num_pairs),
      in_specs=in_specs, out_specs=out_specs,
      scratch_shapes=[pltpu.VMEM((t.block_q, 1), jnp.float32),
                      pltpu.VMEM((t.block_q, 1), jnp.float32),
                      pltpu.VMEM((t.block_q, head_dim), jnp.float32)])
  out, lse = pl.pallas_call(
      functools.partial(_tpu_kernel, t=t, num_pairs=num_pairs),
      grid_spec=grid_spec, out_shape=out_shape,
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=('parallel', 'parallel', 'arbitrary')),
      interpret=t.interpret, name='attention_fwd',
  )(pairs.q_by_q, pairs.k_by_q, pairs.start_q, q, k, v, q_seg, k_seg)
  # Query blocks that no pair lists are never written by the grid: they see no key, so 0.
  seen = jnp.repeat((pairs.start_q[:, 1:] - pairs.start_q[:, :-1]) > 0, t.block_q, axis=1)
  out = jnp.where(seen[:, None, :, None], out, 0).astype(q.dtype)
  return out, jnp.where(seen[:, None, :], lse.reshape(batch, heads, q_len), 0.0)
