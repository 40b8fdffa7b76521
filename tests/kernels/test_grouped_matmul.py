"""grouped_matmul (Pallas, interpret mode) against jax.lax.ragged_dot and a numpy loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.kernels import grouped_matmul

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
