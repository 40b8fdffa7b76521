"""Grouped (ragged) matmul for dropless MoE, with the semantics of `jax.lax.ragged_dot`.

`grouped_matmul(lhs [m, k], rhs [groups, k, n], group_sizes [groups])` multiplies the rows of
group g (rows are sorted by group) by rhs[g]; rows past sum(group_sizes) give zeros. Float32
accumulation; output dtype = lhs dtype. `group_offset` lets rhs hold only some groups (a
device's local experts) and `transpose_rhs` takes rhs as `[groups, n, k]`. Differentiable in
lhs and rhs: d_lhs is the grouped matmul in the other rhs orientation (weights read in place),
d_rhs a per-group lhs_g^T @ d_out_g. Reference: `grouped_matmul_reference`.
"""

import functools

import jax
import jax.numpy as jnp

from mmjax.kernels import backend as backend_lib
from mmjax.kernels.group_tiles import group_tiles, local_row_range
from mmjax.kernels.grouped_matmul_kernels import MatmulTiling, gmm, tgmm


def check_grouped_matmul(lhs, rhs, group_sizes, name='grouped_matmul', *, group_offset=None,
                         transpose_rhs=False):
  """Raises a ValueError unless lhs [m, k], rhs [local_groups, k, n] ([local_groups, n, k] with
  transpose_rhs), group_sizes [groups] int fit; groups == local_groups unless group_offset."""
  if lhs.ndim != 2 or rhs.ndim != 3:
    raise ValueError(f'{name}: expected lhs [m, k] and rhs [groups, k, n], got {lhs.shape} and '
                     f'{rhs.shape}.')
  contracting = rhs.shape[2] if transpose_rhs else rhs.shape[1]
  if lhs.shape[1] != contracting:
    raise ValueError(f'{name}: contracting dims differ: lhs {lhs.shape} vs rhs {rhs.shape} '
                     f'(transpose_rhs={transpose_rhs}).')
  if lhs.dtype != rhs.dtype or not jnp.issubdtype(lhs.dtype, jnp.floating):
    raise ValueError(f'{name}: lhs and rhs must share one floating dtype, got {lhs.dtype} and '
                     f'{rhs.dtype}.')
  if group_sizes.ndim != 1 or not jnp.issubdtype(group_sizes.dtype, jnp.integer):
    raise ValueError(f'{name}: group_sizes must be int [groups], got {group_sizes.dtype} '
                     f'{group_sizes.shape}.')
  if rhs.shape[0] == 0:
    raise ValueError(f'{name}: need at least one group.')
  if group_offset is None and group_sizes.shape[0] != rhs.shape[0]:
    raise ValueError(f'{name}: group_sizes must be int [groups] = [{rhs.shape[0]}] (one per rhs '
                     f'group), got {group_sizes.shape}; pass group_offset when rhs holds only '
                     'some groups.')
  if group_offset is not None and group_sizes.shape[0] < rhs.shape[0]:
    raise ValueError(f'{name}: rhs holds {rhs.shape[0]} groups but group_sizes only '
                     f'{group_sizes.shape[0]}.')
  if group_offset is not None and jnp.size(group_offset) != 1:
    raise ValueError(f'{name}: group_offset must be one int, got shape {jnp.shape(group_offset)}.')


def _tile(size, backend):
  """Tile along a dim of `size`: whole dim on CPU, power of two on GPU, lane multiple on TPU."""
  if backend == 'tpu':
    padded = backend_lib.round_up(size, 128)
    return next(b for b in (512, 256, 128) if padded % b == 0)
  if backend == 'gpu':
    return min(64, max(16, backend_lib.next_power_of_2(size)))
  return size


def _tiling(backend, interpret, m, k, n, tile_m=None, transpose_rhs=False):
  if tile_m is None and backend == 'tpu':
    tile_m = min(128, backend_lib.round_up(m, 8))
  elif tile_m is None and backend == 'gpu':
    tile_m = min(64, max(16, backend_lib.next_power_of_2(m)))
  elif tile_m is None:
    tile_m = min(64, backend_lib.round_up(m, 8))
  return MatmulTiling(tile_m=tile_m, tile_k=_tile(k, backend), tile_n=_tile(n, backend),
                      driver='tpu' if backend == 'tpu' else 'gpu', interpret=interpret,
                      transpose_rhs=transpose_rhs)


def _pad2(x, rows, cols):
  return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, rows - x.shape[-2]), (0, cols - x.shape[-1])])


def _gmm_padded(config, lhs, rhs, group_sizes, group_offset, transpose_rhs):
  """[m, k] x [local, k, n] (or [local, n, k] transposed) -> [m, n] in lhs dtype, padding to
  whole tiles; rows outside the local groups are zero."""
  m, k = lhs.shape
  local = rhs.shape[0]
  n = rhs.shape[1] if transpose_rhs else rhs.shape[2]
  t = _tiling(config[0], config[1], m, k, n, config[2], transpose_rhs)
  m_pad = backend_lib.round_up(m, t.tile_m)
  k_pad, n_pad = backend_lib.round_up(k, t.tile_k), backend_lib.round_up(n, t.tile_n)
  tiles = group_tiles(group_sizes, m_pad, t.tile_m, group_offset, local)
  rhs = _pad2(rhs, n_pad, k_pad) if transpose_rhs else _pad2(rhs, k_pad, n_pad)
  out = gmm(t, _pad2(lhs, m_pad, k_pad), rhs, tiles, lhs.dtype)[:m, :n]
  if t.driver == 'tpu':   # row tiles outside the local groups are never visited
    begin, end = local_row_range(group_sizes, group_offset, local, m)
    rows = jnp.arange(m)[:, None]
    out = jnp.where((rows >= begin) & (rows < end), out, 0).astype(lhs.dtype)
  return out


def _tgmm_padded(config, lhs, d_out, group_sizes, group_offset, num_groups, dtype):
  """Per local group g: lhs[rows_g]^T @ d_out[rows_g] -> [num_groups, k, n]."""
  (m, k), n = lhs.shape, d_out.shape[1]
  t = _tiling(config[0], config[1], m, k, n, config[2])
  m_pad = backend_lib.round_up(m, t.tile_m)
  k_pad, n_pad = backend_lib.round_up(k, t.tile_k), backend_lib.round_up(n, t.tile_n)
  tiles = group_tiles(group_sizes, m_pad, t.tile_m, group_offset, num_groups)
  out = tgmm(t, _pad2(lhs, m_pad, k_pad), _pad2(d_out, m_pad, n_pad), tiles, num_groups,
             dtype)[:, :k, :n]
  if t.driver == 'tpu':   # groups without rows are never visited
    nonempty = (tiles.group_start[1:] - tiles.group_start[:-1]) > 0
    out = jnp.where(nonempty[:, None, None], out, 0).astype(dtype)
  return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _grouped_matmul(config, lhs, rhs, group_sizes, group_offset):
  """config: static (backend, interpret, tile_m or None, transpose_rhs)."""
  return _gmm_padded(config, lhs, rhs, group_sizes, group_offset, config[3])


def _forward(config, lhs, rhs, group_sizes, group_offset):
  out = _gmm_padded(config, lhs, rhs, group_sizes, group_offset, config[3])
  return out, (lhs, rhs, group_sizes, group_offset)


def _backward(config, residuals, d_out):
  """d_lhs = d_out @ rhs^T reads rhs in place (the kernel's other orientation); d_rhs per
  group, in rhs's own layout. Nothing is transposed in memory."""
  lhs, rhs, group_sizes, group_offset = residuals
  transpose_rhs, local = config[3], rhs.shape[0]
  d_out = d_out.astype(lhs.dtype)
  d_lhs = _gmm_padded(config, d_out, rhs, group_sizes, group_offset, not transpose_rhs)
  if transpose_rhs:   # rhs [local, n, k]: per group d_out^T @ lhs
    d_rhs = _tgmm_padded(config, d_out, lhs, group_sizes, group_offset, local, rhs.dtype)
  else:
    d_rhs = _tgmm_padded(config, lhs, d_out, group_sizes, group_offset, local, rhs.dtype)
  return d_lhs, d_rhs, None, None


_grouped_matmul.defvjp(_forward, _backward)


def grouped_matmul(lhs, rhs, group_sizes, *, group_offset=None, transpose_rhs=False,
                   interpret=None, backend=None, tile_m=None):
  """`jax.lax.ragged_dot` as a Pallas kernel: lhs [m, k], rhs [local, k, n] -> [m, n].

  group_sizes [groups] int32: rows are sorted by group; rows past their sum give zeros.
  group_offset (int or int32 scalar array, may be traced): rhs holds only groups
  `group_offset : group_offset + local` (a device's local experts) while group_sizes covers
  all groups; rows of the other groups are not computed and give zeros. None = 0, all local.
  transpose_rhs: rhs is `[local, n, k]` and out = lhs @ rhs[g]^T, read in place.
  backend: 'cpu' | 'gpu' | 'tpu' (None = jax.default_backend()). tile_m: rows per tile
  (None = by backend; a multiple of 8 on TPU, a power of two >= 16 on GPU).
  """
  check_grouped_matmul(lhs, rhs, group_sizes, group_offset=group_offset,
                       transpose_rhs=transpose_rhs)
  backend = backend_lib.resolve_backend(backend)
  interpret = backend_lib.resolve_interpret(interpret, backend)
  if tile_m is not None:
    legal = (tile_m % 8 == 0) if backend == 'tpu' else (
        tile_m >= 16 and not tile_m & (tile_m - 1)) if backend == 'gpu' else True
    if not isinstance(tile_m, int) or tile_m <= 0 or not legal:
      raise ValueError(f'grouped_matmul: tile_m={tile_m!r} is not a legal row tile on {backend} '
                       '(TPU: a multiple of 8; GPU: a power of two >= 16).')
  n = rhs.shape[1] if transpose_rhs else rhs.shape[2]
  if lhs.shape[0] == 0:
    return jnp.zeros((0, n), lhs.dtype)
  offset = jnp.asarray(0 if group_offset is None else group_offset, jnp.int32).reshape(())
  return _grouped_matmul((backend, interpret, tile_m, bool(transpose_rhs)), lhs, rhs,
                         group_sizes.astype(jnp.int32), offset)
