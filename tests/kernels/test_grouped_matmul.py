"""grouped_matmul (Pallas, interpret mode) against jax.lax.ragged_dot and a numpy loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.kernels import grouped_matmul, grouped_matmul_reference

FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def _numpy_grouped(lhs, rhs, group_sizes):
  lhs, rhs = np.asarray(lhs, np.float64), np.asarray(rhs, np.float64)
  out = np.zeros((lhs.shape[0], rhs.shape[2]))
  start = 0
  for g, size in enumerate(np.asarray(group_sizes)):
    out[start:start + size] = lhs[start:start + size] @ rhs[g]
    start += size
  return out


def _value_and_grads(fn, lhs, rhs, ct):
  def run(lhs, rhs, ct):
    out, vjp = jax.vjp(fn, lhs, rhs)
    return out, vjp(ct)
  return jax.jit(run, compiler_options=FAST_COMPILE)(lhs, rhs, ct)


def _close(actual, expected, tol):
  np.testing.assert_allclose(np.asarray(actual, np.float32), np.asarray(expected, np.float32),
                             atol=tol, rtol=tol)


@pytest.mark.parametrize('sizes,backend,tile_m,dtype', [
    ([7, 0, 13, 2, 10], 'cpu', 8, jnp.float32),     # empty group, groups spanning tiles
    ([0, 0, 0, 0, 0], 'cpu', None, jnp.float32),    # no rows used at all
    ([0, 11, 0, 14, 5], 'tpu', 8, jnp.float32),     # TPU work items; sum(group_sizes) < m
    ([9, 4, 0, 12, 0], 'gpu', 16, jnp.float32),     # GPU per-tile loop, empty last group
    ([5, 0, 20, 1, 9], 'cpu', 8, jnp.bfloat16),
])
def test_matches_ragged_dot(sizes, backend, tile_m, dtype):
  rng = np.random.default_rng(0)
  m, k, n = 40, 24, 20
  lhs = jnp.asarray(rng.standard_normal((m, k), np.float32), dtype)
  rhs = jnp.asarray(rng.standard_normal((len(sizes), k, n), np.float32), dtype)
  ct = jnp.asarray(rng.standard_normal((m, n), np.float32), dtype)
  group_sizes = jnp.asarray(sizes, jnp.int32)
  kernel = lambda a, b: grouped_matmul(a, b, group_sizes, backend=backend, interpret=True,
                                       tile_m=tile_m)
  ref = lambda a, b: jax.lax.ragged_dot(a, b, group_sizes)
  out, grads = _value_and_grads(kernel, lhs, rhs, ct)
  ref_out, ref_grads = _value_and_grads(ref, lhs, rhs, ct)
  tol = 5e-2 if dtype == jnp.bfloat16 else 1e-4
  assert out.dtype == dtype and out.shape == (m, n)
  _close(out, _numpy_grouped(lhs, rhs, sizes), tol)
  _close(out, ref_out, tol)
  np.testing.assert_array_equal(np.asarray(out[sum(sizes):], np.float32), 0.0)
  for g, r in zip(grads, ref_grads):
    assert g.dtype == dtype
    _close(g, r, 2 * tol)
  d_rhs_empty = [g for g, s in enumerate(sizes) if s == 0]
  np.testing.assert_array_equal(np.asarray(grads[1], np.float32)[d_rhs_empty], 0.0)


@pytest.mark.parametrize('lhs_shape,rhs_shape,sizes_shape,dtypes,match', [
    ((8, 4), (3, 4, 5), (2,), ('float32', 'float32'), 'group_sizes'),
    ((8, 4), (3, 6, 5), (3,), ('float32', 'float32'), 'contracting'),
    ((8, 4), (3, 4, 5), (3,), ('float32', 'bfloat16'), 'dtype'),
    ((8, 4, 1), (3, 4, 5), (3,), ('float32', 'float32'), r'lhs \[m, k\]'),
])
def test_bad_input_raises(lhs_shape, rhs_shape, sizes_shape, dtypes, match):
  lhs, rhs = jnp.zeros(lhs_shape, dtypes[0]), jnp.zeros(rhs_shape, dtypes[1])
  with pytest.raises(ValueError, match=match):
    grouped_matmul(lhs, rhs, jnp.ones(sizes_shape, jnp.int32), interpret=True)


def test_bad_tile_raises():
  with pytest.raises(ValueError, match='tile_m'):
    grouped_matmul(jnp.zeros((8, 4)), jnp.zeros((2, 4, 4)), jnp.ones((2,), jnp.int32),
                   backend='tpu', interpret=True, tile_m=12)


def _numpy_local(lhs, rhs, sizes, offset, transpose, ct):
  """(out, d_lhs, d_rhs) in float64 for rhs holding groups offset : offset + len(rhs)."""
  lhs, ct = np.asarray(lhs, np.float64), np.asarray(ct, np.float64)
  w = np.asarray(rhs, np.float64)
  w = np.swapaxes(w, 1, 2) if transpose else w                       # [local, k, n]
  out, d_lhs, d_w = np.zeros((lhs.shape[0], w.shape[2])), np.zeros_like(lhs), np.zeros_like(w)
  ends = np.cumsum(sizes)
  for g in range(offset, offset + w.shape[0]):
    rows = slice(ends[g] - sizes[g], ends[g])
    out[rows] = lhs[rows] @ w[g - offset]
    d_lhs[rows] = ct[rows] @ w[g - offset].T
    d_w[g - offset] = lhs[rows].T @ ct[rows]
  return out, d_lhs, (np.swapaxes(d_w, 1, 2) if transpose else d_w)


@pytest.mark.parametrize('sizes,offset,local,transpose,backend,tile_m', [
    ([7, 0, 13, 2, 10, 3], 2, 3, False, 'cpu', 8),   # middle groups, one of them small
    ([7, 0, 13, 2, 10, 3], 0, 2, True, 'cpu', 8),    # first groups (incl. an empty one)
    ([5, 9, 0, 0, 11, 6], 2, 2, True, 'tpu', 8),     # local groups all empty
    ([5, 9, 0, 4, 11, 6], 4, 2, False, 'tpu', 8),    # last groups, rows past the sum
    ([3, 12, 0, 17, 1, 2], 1, 3, True, 'gpu', 16),   # groups spanning several tiles
    ([6, 6, 6, 6, 6, 6], 0, 6, True, 'tpu', 8),      # all local, transposed only
])
def test_group_offset_and_transpose_rhs(sizes, offset, local, transpose, backend, tile_m):
  rng = np.random.default_rng(1)
  m, k, n = 45, 24, 20
  lhs = jnp.asarray(rng.standard_normal((m, k), np.float32))
  shape = (local, n, k) if transpose else (local, k, n)
  rhs = jnp.asarray(rng.standard_normal(shape, np.float32))
  ct = jnp.asarray(rng.standard_normal((m, n), np.float32))
  group_sizes = jnp.asarray(sizes, jnp.int32)
  want = _numpy_local(lhs, rhs, sizes, offset, transpose, ct)
  kernel = lambda a, b: grouped_matmul(a, b, group_sizes, group_offset=jnp.int32(offset),
                                       transpose_rhs=transpose, backend=backend, interpret=True,
                                       tile_m=tile_m)
  ref = lambda a, b: grouped_matmul_reference(a, b, group_sizes, group_offset=offset,
                                              transpose_rhs=transpose)
  for fn in (kernel, ref):
    out, (d_lhs, d_rhs) = _value_and_grads(fn, lhs, rhs, ct)
    assert out.shape == (m, n) and d_rhs.shape == shape
    for got, exp in zip((out, d_lhs, d_rhs), want):
      _close(got, exp, 1e-4)
  # Rows of non-local groups and past the sum are exactly zero, in the output and in d_lhs.
  ends = np.cumsum(sizes)
  local_rows = np.zeros(m, bool)
  local_rows[ends[offset] - sizes[offset]:ends[offset + local - 1]] = True
  out, (d_lhs, _) = _value_and_grads(kernel, lhs, rhs, ct)
  np.testing.assert_array_equal(np.asarray(out)[~local_rows], 0.0)
  np.testing.assert_array_equal(np.asarray(d_lhs)[~local_rows], 0.0)


def test_backward_reads_rhs_in_place():
  """No transpose of the weights in the backward program (the kernel reads them as they are)."""
  lhs, rhs = jnp.ones((16, 8)), jnp.ones((2, 8, 12))
  sizes = jnp.asarray([9, 7], jnp.int32)
  fn = lambda a, b: jnp.sum(grouped_matmul(a, b, sizes, interpret=True, tile_m=8) ** 2)
  jaxpr = str(jax.make_jaxpr(jax.grad(fn, (0, 1)))(lhs, rhs))
  assert 'transpose' not in jaxpr, jaxpr


def test_group_offset_bad_input_raises():
  lhs, rhs = jnp.zeros((8, 4)), jnp.zeros((2, 4, 5))
  with pytest.raises(ValueError, match='group_offset'):
    grouped_matmul(lhs, rhs, jnp.ones((4,), jnp.int32), interpret=True)
  with pytest.raises(ValueError, match='only 1'):
    grouped_matmul(lhs, rhs, jnp.ones((1,), jnp.int32), group_offset=0, interpret=True)
  with pytest.raises(ValueError, match='contracting'):
    grouped_matmul(lhs, rhs, jnp.ones((2,), jnp.int32), transpose_rhs=True, interpret=True)
