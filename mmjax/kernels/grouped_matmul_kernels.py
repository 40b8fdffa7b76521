"""Pallas kernels for grouped matmuls over group-sorted rows, driven by `GroupTiles` work items.

gmm:  out [m, n] = lhs [m, k] @ rhs[group(row)] with rhs `[groups, k, n]`, or with
      `transpose_rhs` lhs @ rhs[group(row)]^T with rhs `[groups, n, k]` read in place.
tgmm: out [groups, k, n] = per group, lhs_g^T @ rhs_g with lhs `[m, k]`, rhs `[m, n]`.
Shapes arrive padded to whole tiles. On GPU every output tile is written by one program that
loops over its work items; on TPU the grid walks the work items (scalar-prefetched tables) and
output blocks not visited by any item are left for the caller to zero.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

from mmjax.kernels.attention_tiles import dot, dot_nt, dot_tn
from mmjax.kernels.group_tiles import GroupTiles


@dataclasses.dataclass(frozen=True)
class MatmulTiling:
  tile_m: int
  tile_k: int
  tile_n: int
  driver: str      # 'gpu' (also interpret mode on CPU) or 'tpu'
  interpret: bool
  transpose_rhs: bool = False   # gmm: rhs is [groups, n, k]


def _row_mask(t, tile, lo, hi, width):
  rows = tile * t.tile_m + lax.broadcasted_iota(jnp.int32, (t.tile_m, width), 0)
  return jnp.logical_and(rows >= lo, rows < hi)


def _first_last(ref, w, num_items):
  cur, prev, nxt = ref[w], ref[jnp.maximum(w - 1, 0)], ref[jnp.minimum(w + 1, num_items - 1)]
  return (jnp.logical_or(w == 0, prev != cur),
          jnp.logical_or(w == num_items - 1, nxt != cur))


def gmm(t: MatmulTiling, lhs, rhs, tiles: GroupTiles, out_dtype):
  """lhs [m, k] @ rhs [groups, k, n] (or rhs [groups, n, k] transposed) by row group -> [m, n]
  (TPU: unvisited row tiles undefined)."""
  m, k = lhs.shape
  n = rhs.shape[1] if t.transpose_rhs else rhs.shape[2]
  grid_n, grid_k = n // t.tile_n, k // t.tile_k
  out_shape = jax.ShapeDtypeStruct((m, n), out_dtype)
  if t.driver == 'tpu':
    num_items = tiles.group.shape[0]
    if t.transpose_rhs:
      rhs_spec = pl.BlockSpec((None, t.tile_n, t.tile_k),
                              lambda j, w, kk, g, tl, lo, hi: (g[w], j, kk))
    else:
      rhs_spec = pl.BlockSpec((None, t.tile_k, t.tile_n),
                              lambda j, w, kk, g, tl, lo, hi: (g[w], kk, j))
    grid_spec = pltpu.PrefetchScalarGridSpec(
        num_scalar_prefetch=4, grid=(grid_n, num_items, grid_k),
        in_specs=[
            pl.BlockSpec((t.tile_m, t.tile_k), lambda j, w, kk, g, tl, lo, hi: (tl[w], kk)),
            rhs_spec],
        out_specs=pl.BlockSpec((t.tile_m, t.tile_n), lambda j, w, kk, g, tl, lo, hi: (tl[w], j)),
        scratch_shapes=[pltpu.VMEM((t.tile_m, t.tile_n), jnp.float32)])
    return pl.pallas_call(
        functools.partial(_gmm_tpu_kernel, t=t, num_items=num_items, grid_k=grid_k),
        grid_spec=grid_spec, out_shape=out_shape, interpret=t.interpret, name='gmm',
        compiler_params=pltpu.CompilerParams(
            dimension_semantics=('parallel', 'arbitrary', 'arbitrary')),
    )(tiles.group, tiles.tile, tiles.lo, tiles.hi, lhs, rhs)
  full = lambda a: pl.BlockSpec(a.shape, lambda i, j: (0,) * a.ndim)
  if t.transpose_rhs:
    rhs_spec = pl.BlockSpec((rhs.shape[0], t.tile_n, k), lambda i, j: (0, j, 0))
  else:
    rhs_spec = pl.BlockSpec((rhs.shape[0], k, t.tile_n), lambda i, j: (0, 0, j))
  return pl.pallas_call(
      functools.partial(_gmm_gpu_kernel, t=t, grid_k=grid_k),
      grid=(m // t.tile_m, grid_n),
      in_specs=[full(tiles.group), full(tiles.lo), full(tiles.hi), full(tiles.tile_start),
                pl.BlockSpec((t.tile_m, k), lambda i, j: (i, 0)), rhs_spec],
      out_specs=pl.BlockSpec((t.tile_m, t.tile_n), lambda i, j: (i, j)),
      out_shape=out_shape, interpret=t.interpret, name='gmm',
      compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=2),
  )(tiles.group, tiles.lo, tiles.hi, tiles.tile_start, lhs, rhs)


def _gmm_gpu_kernel(group_ref, lo_ref, hi_ref, start_ref, lhs_ref, rhs_ref, out_ref, *, t,
                    grid_k):
  i = pl.program_id(0)

  def item(w, acc):
    g = group_ref[w]
    mask = _row_mask(t, i, lo_ref[w], hi_ref[w], t.tile_k)

    def k_step(kk, acc):
      cols = pl.ds(pl.multiple_of(kk * t.tile_k, t.tile_k), t.tile_k)
      x = jnp.where(mask, lhs_ref[:, cols], 0)
      if t.transpose_rhs:
        return acc + dot_nt(x, rhs_ref[g, :, cols])
      return acc + dot(x, rhs_ref[g, cols, :])

    return lax.fori_loop(0, grid_k, k_step, acc)

  acc = lax.fori_loop(start_ref[i], start_ref[i + 1], item,
                      jnp.zeros((t.tile_m, t.tile_n), jnp.float32))
  out_ref[...] = acc.astype(out_ref.dtype)


def _gmm_tpu_kernel(group_ref, tile_ref, lo_ref, hi_ref, lhs_ref, rhs_ref, out_ref, acc_ref, *,
                    t, num_items, grid_k):
  w, kk = pl.program_id(1), pl.program_id(2)
  first, last = _first_last(tile_ref, w, num_items)

  @pl.when(jnp.logical_and(first, kk == 0))
  def _init():
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  @pl.when(hi_ref[w] > lo_ref[w])
  def _accumulate():
    mask = _row_mask(t, tile_ref[w], lo_ref[w], hi_ref[w], t.tile_k)
    x = jnp.where(mask, lhs_ref[...], 0)
    acc_ref[...] += dot_nt(x, rhs_ref[...]) if t.transpose_rhs else dot(x, rhs_ref[...])

  @pl.when(jnp.logical_and(last, kk == grid_k - 1))
  def _finish():
    out_ref[...] = acc_ref[...].astype(out_ref.dtype)


def tgmm(t: MatmulTiling, lhs, rhs, tiles: GroupTiles, num_groups: int, out_dtype):
  """Per group g: lhs[rows_g]^T @ rhs[rows_g] -> [groups, k, n] (TPU: empty groups undefined)."""
  m, k = lhs.shape
  n = rhs.shape[1]
  grid_k, grid_n = k // t.tile_k, n // t.tile_n
  out_shape = jax.ShapeDtypeStruct((num_groups, k, n), out_dtype)
  if t.driver == 'tpu':
    num_items = tiles.group.shape[0]
    grid_spec = pltpu.PrefetchScalarGridSpec(
        num_scalar_prefetch=4, grid=(grid_k, grid_n, num_items),
        in_specs=[
            pl.BlockSpec((t.tile_m, t.tile_k), lambda a, b, w, g, tl, lo, hi: (tl[w], a)),
            pl.BlockSpec((t.tile_m, t.tile_n), lambda a, b, w, g, tl, lo, hi: (tl[w], b))],
        out_specs=pl.BlockSpec((None, t.tile_k, t.tile_n),
                               lambda a, b, w, g, tl, lo, hi: (g[w], a, b)),
        scratch_shapes=[pltpu.VMEM((t.tile_k, t.tile_n), jnp.float32)])
    return pl.pallas_call(
        functools.partial(_tgmm_tpu_kernel, t=t, num_items=num_items),
        grid_spec=grid_spec, out_shape=out_shape, interpret=t.interpret, name='tgmm',
        compiler_params=pltpu.CompilerParams(
            dimension_semantics=('parallel', 'parallel', 'arbitrary')),
    )(tiles.group, tiles.tile, tiles.lo, tiles.hi, lhs, rhs)
  full = lambda a: pl.BlockSpec(a.shape, lambda g, a_, b_: (0,) * a.ndim)
  return pl.pallas_call(
      functools.partial(_tgmm_gpu_kernel, t=t),
      grid=(num_groups, grid_k, grid_n),
      in_specs=[full(tiles.tile), full(tiles.lo), full(tiles.hi), full(tiles.group_start),
                pl.BlockSpec((m, t.tile_k), lambda g, a, b: (0, a)),
                pl.BlockSpec((m, t.tile_n), lambda g, a, b: (0, b))],
      out_specs=pl.BlockSpec((None, t.tile_k, t.tile_n), lambda g, a, b: (g, a, b)),
      out_shape=out_shape, interpret=t.interpret, name='tgmm',
      compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=2),
  )(tiles.tile, tiles.lo, tiles.hi, tiles.group_start, lhs, rhs)


def _tgmm_gpu_kernel(tile_ref, lo_ref, hi_ref, start_ref, lhs_ref, rhs_ref, out_ref, *, t):
  g = pl.program_id(0)

  def item(w, acc):
    tile = tile_ref[w]
    rows = pl.ds(pl.multiple_of(tile * t.tile_m, t.tile_m), t.tile_m)
    mask = _row_mask(t, tile, lo_ref[w], hi_ref[w], t.tile_k)
    return acc + dot_tn(jnp.where(mask, lhs_ref[rows, :], 0), rhs_ref[rows, :])

  acc = lax.fori_loop(start_ref[g], start_ref[g + 1], item,
                      jnp.zeros((t.tile_k, t.tile_n), jnp.float32))
  out_ref[...] = acc.astype(out_ref.dtype)


def _tgmm_tpu_kernel(group_ref, tile_ref, lo_ref, hi_ref, lhs_ref, rhs_ref, out_ref, acc_ref, *,
                     t, num_items):
  w = pl.program_id(2)
  first, last = _first_last(group_ref, w, num_items)

  @pl.when(first)
  def _init():
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  @pl.when(hi_ref[w] > lo_ref[w])
  def _accumulate():
    mask = _row_mask(t, tile_ref[w], lo_ref[w], hi_ref[w], t.tile_k)
    acc_ref[...] += dot_tn(jnp.where(mask, lhs_ref[...], 0), rhs_ref[...])

  @pl.when(last)
  def _finish():
    out_ref[...] = acc_ref[...].astype(out_ref.dtype)
