"""Backward pass of block-sparse flash attention: a dq kernel and a dk/dv kernel.

Same layouts and pair tables as `attention_forward`. `lse` and `delta` (= rowsum(dO * O)) are
`[batch, heads, q_len]` float32. The dq kernel walks the pairs sorted by query block, the
dk/dv kernel the pairs sorted by key block, so neither needs atomics.
"""

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

from mmjax.kernels import attention_tiles as tiles
from mmjax.kernels.block_pairs import BlockPairs


def attention_backward(t: tiles.Tiling, q, k, v, q_seg, k_seg, pairs: BlockPairs, do, lse,
                       delta):
  """Returns (dq, dk, dv) in the layouts and dtypes of q, k, v."""
  q_seg, k_seg = tiles.segment_layouts(t, q_seg, k_seg)
  if t.driver == 'tpu':
    dq = _dq_tpu(t, q, k, v, q_seg, k_seg, pairs, do, lse, delta)
    dk, dv = _dkv_tpu(t, q, k, v, q_seg, k_seg, pairs, do, lse, delta)
    return dq, dk, dv
  dq = _dq_gpu(t, q, k, v, q_seg, k_seg, pairs, do, lse, delta)
  dk, dv = _dkv_gpu(t, q, k, v, q_seg, k_seg, pairs, do, lse, delta)
  return dq, dk, dv


def _dq_step(t, i, j, q, k, v, q_seg, k_seg, do, lse, delta):
  mask = tiles.tile_mask(t, i, j, q_seg, k_seg)
  p = tiles.probs(t, q, k, lse, mask)
  ds = tiles.grad_logits(p, do, v, delta)
  return tiles.dot(ds.astype(k.dtype), k)


def _dkv_step(t, i, j, q, k, v, q_seg, k_seg, do, lse, delta):
  mask = tiles.tile_mask(t, i, j, q_seg, k_seg)
  p = tiles.probs(t, q, k, lse, mask)
  dv = tiles.dot_tn(p.astype(do.dtype), do)
  ds = tiles.grad_logits(p, do, v, delta)
  return tiles.dot_tn(ds.astype(q.dtype), q), dv


def _gpu_params(t):
  return pltriton.CompilerParams(num_warps=t.num_warps, num_stages=t.num_stages)


def _dq_gpu_kernel(k_by_q_ref, start_ref, q_ref, k_ref, v_ref, q_seg_ref, k_seg_ref, do_ref,
                   lse_ref, delta_ref, dq_ref, *, t):
  i = pl.program_id(0)
  q, do = q_ref[...], do_ref[...]
  lse, delta = lse_ref[...][:, None], delta_ref[...][:, None]
  q_seg = None if q_seg_ref is None else q_seg_ref[...]

  def body(p, dq):
    j = k_by_q_ref[p]
    rows = pl.ds(pl.multiple_of(j * t.block_k, t.block_k), t.block_k)
    k_seg = None if k_seg_ref is None else k_seg_ref[:, rows]
    return dq + _dq_step(t, i, j, q, k_ref[rows, :], v_ref[rows, :], q_seg, k_seg, do, lse,
                         delta)

  dq = jax.lax.fori_loop(start_ref[i], start_ref[i + 1], body,
                         jnp.zeros(q.shape, jnp.float32))
  dq_ref[...] = (dq * t.sm_scale).astype(dq_ref.dtype)


def _dq_gpu(t, q, k, v, q_seg, k_seg, pairs, do, lse, delta):
  batch, q_len, heads, head_dim = q.shape
  kv_len = k.shape[1]
  num_q_blocks = q_len // t.block_q
  row = functools.partial(tiles.table_row, t)
  q_tile = pl.BlockSpec((None, t.block_q, None, head_dim), lambda i, b, h: (b, i, h, 0))
  kv_full = pl.BlockSpec((None, kv_len, None, head_dim),
                         lambda i, b, h: (b, 0, tiles.kv_head(t, h), 0))
  stat = pl.BlockSpec((None, None, t.block_q), lambda i, b, h: (b, h, i))
  in_specs = [
      pl.BlockSpec((None, pairs.k_by_q.shape[1]), lambda i, b, h: (row(b), 0)),
      pl.BlockSpec((None, num_q_blocks + 1), lambda i, b, h: (row(b), 0)),
      q_tile, kv_full, kv_full,
      None if q_seg is None else pl.BlockSpec((None, t.block_q, 1), lambda i, b, h: (b, i, 0)),
      None if k_seg is None else pl.BlockSpec((None, 1, kv_len), lambda i, b, h: (b, 0, 0)),
      q_tile, stat, stat,
  ]
  return pl.pallas_call(
      functools.partial(_dq_gpu_kernel, t=t),
      grid=(num_q_blocks, batch, heads), in_specs=in_specs, out_specs=q_tile,
      out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype), compiler_params=_gpu_params(t),
      interpret=t.interpret, name='attention_dq',
  )(pairs.k_by_q, pairs.start_q, q, k, v, q_seg, k_seg, do, lse, delta)


def _dkv_gpu_kernel(q_by_k_ref, start_ref, q_ref, k_ref, v_ref, q_seg_ref, k_seg_ref, do_ref,
                    lse_ref, delta_ref, dk_ref, dv_ref, *, t):
  j = pl.program_id(0)
  k, v = k_ref[...], v_ref[...]
  k_seg = None if k_seg_ref is None else k_seg_ref[...]

  def body(p, carry):
    i = q_by_k_ref[p]
    rows = pl.ds(pl.multiple_of(i * t.block_q, t.block_q), t.block_q)
    q_seg = None if q_seg_ref is None else q_seg_ref[rows, :]
    dk, dv = carry
    for g in range(t.q_per_kv):   # the query heads that share this key/value head
      dk_g, dv_g = _dkv_step(t, i, j, q_ref[rows, g, :], k, v, q_seg, k_seg,
                             do_ref[rows, g, :], lse_ref[g, rows][:, None],
                             delta_ref[g, rows][:, None])
      dk, dv = dk + dk_g, dv + dv_g
    return dk, dv

  zeros = jnp.zeros(k.shape, jnp.float32)
  dk, dv = jax.lax.fori_loop(start_ref[j], start_ref[j + 1], body, (zeros, zeros))
  dk_ref[...] = (dk * t.sm_scale).astype(dk_ref.dtype)
  dv_ref[...] = dv.astype(dv_ref.dtype)


def _dkv_gpu(t, q, k, v, q_seg, k_seg, pairs, do, lse, delta):
  batch, q_len, _, head_dim = q.shape
  kv_len, heads = k.shape[1], k.shape[2]   # one program per key/value head
  num_k_blocks = kv_len // t.block_k
  row = functools.partial(tiles.table_row, t)
  g = t.q_per_kv
  k_tile = pl.BlockSpec((None, t.block_k, None, head_dim), lambda j, b, h: (b, j, h, 0))
  q_full = pl.BlockSpec((None, q_len, g, head_dim), lambda j, b, h: (b, 0, h, 0))
  stat = pl.BlockSpec((None, g, q_len), lambda j, b, h: (b, h, 0))
  in_specs = [
      pl.BlockSpec((None, pairs.q_by_k.shape[1]), lambda j, b, h: (row(b), 0)),
      pl.BlockSpec((None, num_k_blocks + 1), lambda j, b, h: (row(b), 0)),
      q_full, k_tile, k_tile,
      None if q_seg is None else pl.BlockSpec((None, q_len, 1), lambda j, b, h: (b, 0, 0)),
      None if k_seg is None else pl.BlockSpec((None, 1, t.block_k), lambda j, b, h: (b, 0, j)),
      q_full, stat, stat,
  ]
  return pl.pallas_call(
      functools.partial(_dkv_gpu_kernel, t=t),
      grid=(num_k_blocks, batch, heads), in_specs=in_specs, out_specs=[k_tile, k_tile],
      out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
      compiler_params=_gpu_params(t), interpret=t.interpret, name='attention_dkv',
  )(pairs.q_by_k, pairs.start_k, q, k, v, q_seg, k_seg, do, lse, delta)


def _tpu_call(t, kernel, grid, in_specs, out_specs, out_shape, scratch, tables, args, name):
  grid_spec = pltpu.PrefetchScalarGridSpec(
      num_scalar_prefetch=3, grid=grid, in_specs=in_specs, out_specs=out_specs,
      scratch_shapes=scratch)
  return pl.pallas_call(
      functools.partial(kernel, t=t, num_pairs=grid[-1]), grid_spec=grid_spec,
      out_shape=out_shape, interpret=t.interpret, name=name,
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=('parallel', 'parallel', 'arbitrary')),
  )(*tables, *args)


def _tpu_rows(t, *stats):
  """[batch, heads, q_len] -> [batch, heads, q_blocks, 1, block_q]: legal, lane-dense blocks."""
  return [s.reshape(*s.shape[:2], -1, 1, t.block_q) for s in stats]


def _tpu_specs(t, q, k, q_of, k_of, q_heads=None):
  """BlockSpecs for q-side and k-side tiles given table lookups q_of/k_of(b, p, tables). The
  grid's head h is a query head (k-side tiles read head h // q_per_kv), or with `q_heads` = g
  a key/value head whose q-side tiles hold its g query heads."""
  head_dim = q.shape[-1]
  k_head = (lambda h: h) if q_heads else (lambda h: tiles.kv_head(t, h))
  q_tile = pl.BlockSpec((None, q_heads, t.block_q, head_dim),
                        lambda b, h, p, *tb: (b, h, q_of(b, p, *tb), 0))
  k_tile = pl.BlockSpec((None, None, t.block_k, head_dim),
                        lambda b, h, p, *tb: (b, k_head(h), k_of(b, p, *tb), 0))
  stat = pl.BlockSpec((None, q_heads, None, 1, t.block_q),   # rows, see _tpu_rows
                      lambda b, h, p, *tb: (b, h, q_of(b, p, *tb), 0, 0))
  q_seg = pl.BlockSpec((None, None, 1, t.block_q), lambda b, h, p, *tb: (b, q_of(b, p, *tb), 0, 0))
  k_seg = pl.BlockSpec((None, 1, t.block_k), lambda b, h, p, *tb: (b, 0, k_of(b, p, *tb)))
  return q_tile, k_tile, stat, q_seg, k_seg


def _dq_tpu_kernel(q_by_q_ref, k_by_q_ref, start_ref, q_ref, k_ref, v_ref, q_seg_ref, k_seg_ref,
                   do_ref, lse_ref, delta_ref, dq_ref, acc_ref, *, t, num_pairs):
  r, p = tiles.table_row(t, pl.program_id(0)), pl.program_id(2)
  first, last = tiles.pair_flags(q_by_q_ref, r, p, num_pairs)

  @pl.when(first)
  def _init():
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  @pl.when(p < tiles.pair_count(start_ref, r))
  def _step():
    acc_ref[...] += _dq_step(
        t, q_by_q_ref[r, p], k_by_q_ref[r, p], q_ref[...], k_ref[...], v_ref[...],
        None if q_seg_ref is None else q_seg_ref[0][:, None],
        None if k_seg_ref is None else k_seg_ref[...], do_ref[...], lse_ref[0][:, None],
        delta_ref[0][:, None])

  @pl.when(last)
  def _finish():
    dq_ref[...] = (acc_ref[...] * t.sm_scale).astype(dq_ref.dtype)


def _dq_tpu(t, q, k, v, q_seg, k_seg, pairs, do, lse, delta):
  batch, heads, _, head_dim = q.shape
  row = functools.partial(tiles.table_row, t)
  q_tile, k_tile, stat, q_seg_spec, k_seg_spec = _tpu_specs(
      t, q, k, lambda b, p, qb, kb, st: qb[row(b), p], lambda b, p, qb, kb, st: kb[row(b), p])
  in_specs = [q_tile, k_tile, k_tile, None if q_seg is None else q_seg_spec,
              None if k_seg is None else k_seg_spec, q_tile, stat, stat]
  dq = _tpu_call(
      t, _dq_tpu_kernel, (batch, heads, pairs.q_by_q.shape[1]), in_specs, q_tile,
      jax.ShapeDtypeStruct(q.shape, q.dtype), [pltpu.VMEM((t.block_q, head_dim), jnp.float32)],
      (pairs.q_by_q, pairs.k_by_q, pairs.start_q),
      (q, k, v, q_seg, k_seg, do, *_tpu_rows(t, lse, delta)), 'attention_dq')
  # Query blocks that no pair lists are never written by the grid: zero them here.
  seen = jnp.repeat((pairs.start_q[:, 1:] - pairs.start_q[:, :-1]) > 0, t.block_q, axis=1)
  return jnp.where(seen[:, None, :, None], dq, 0).astype(q.dtype)


def _dkv_tpu_kernel(k_by_k_ref, q_by_k_ref, start_ref, q_ref, k_ref, v_ref, q_seg_ref,
                    k_seg_ref, do_ref, lse_ref, delta_ref, dk_ref, dv_ref, dk_acc, dv_acc, *, t,
                    num_pairs):
  r, p = tiles.table_row(t, pl.program_id(0)), pl.program_id(2)
  first, last = tiles.pair_flags(k_by_k_ref, r, p, num_pairs)

  @pl.when(first)
  def _init():
    dk_acc[...] = jnp.zeros(dk_acc.shape, jnp.float32)
    dv_acc[...] = jnp.zeros(dv_acc.shape, jnp.float32)

  @pl.when(p < tiles.pair_count(start_ref, r))
  def _step():
    for g in range(t.q_per_kv):   # the query heads that share this key/value head
      dk, dv = _dkv_step(
          t, q_by_k_ref[r, p], k_by_k_ref[r, p], q_ref[g], k_ref[...], v_ref[...],
          None if q_seg_ref is None else q_seg_ref[0][:, None],
          None if k_seg_ref is None else k_seg_ref[...], do_ref[g], lse_ref[g, 0][:, None],
          delta_ref[g, 0][:, None])
      dk_acc[...] += dk
      dv_acc[...] += dv

  @pl.when(last)
  def _finish():
    dk_ref[...] = (dk_acc[...] * t.sm_scale).astype(dk_ref.dtype)
    dv_ref[...] = dv_acc[...].astype(dv_ref.dtype)


def _dkv_tpu(t, q, k, v, q_seg, k_seg, pairs, do, lse, delta):
  batch, heads, kv_len, head_dim = k.shape
  row = functools.partial(tiles.table_row, t)
  q_tile, k_tile, stat, q_seg_spec, k_seg_spec = _tpu_specs(
      t, q, k, lambda b, p, kb, qb, st: qb[row(b), p], lambda b, p, kb, qb, st: kb[row(b), p],
      q_heads=t.q_per_kv)
  in_specs = [q_tile, k_tile, k_tile, None if q_seg is None else q_seg_spec,
              None if k_seg is None else k_seg_spec, q_tile, stat, stat]
  scratch = [pltpu.VMEM((t.block_k, head_dim), jnp.float32)] * 2
  dk, dv = _tpu_call(
      t, _dkv_tpu_kernel, (batch, heads, pairs.k_by_k.shape[1]), in_specs, [k_tile, k_tile],
      [jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)], scratch,
      (pairs.k_by_k, pairs.q_by_k, pairs.start_k),
      (q, k, v, q_seg, k_seg, do, *_tpu_rows(t, lse, delta)), 'attention_dkv')
  # Key blocks that no query block visits are never written by the grid: zero them here.
  visited = (pairs.start_k[:, 1:] - pairs.start_k[:, :-1]) > 0          # [rows, k_blocks]
  visited = jnp.repeat(visited, t.block_k, axis=1)[:, None, :, None]     # [rows, 1, kv_len, 1]
  return jnp.where(visited, dk, 0).astype(k.dtype), jnp.where(visited, dv, 0).astype(v.dtype)
