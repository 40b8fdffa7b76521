"""The Mamba-1 selective scan: reference (chunked associative scan) and Pallas kernel
(interpret mode) against a float64 numpy recurrence, forward and gradients (central
differences of the numpy recurrence)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import kernels
from mmjax.models.mamba import selective_scan


def numpy_scan(u, delta, A, B, C, D):
  """h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t; y_t = C_t . h_t + D u_t, in float64."""
  b, l, d = u.shape
  y = np.zeros((b, l, d))
  for i in range(b):
    h = np.zeros(A.shape)
    for t in range(l):
      h = np.exp(delta[i, t][:, None] * A) * h + (delta[i, t] * u[i, t])[:, None] * B[i, t]
      y[i, t] = h @ C[i, t] + D * u[i, t]
  return y


def _inputs(b=2, l=11, d=6, n=4, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal((b, l, d)), rng.uniform(0.05, 0.6, (b, l, d)),
          -rng.uniform(0.2, 1.5, (d, n)), rng.standard_normal((b, l, n)),
          rng.standard_normal((b, l, n)), rng.standard_normal(d))


IMPLS = {
    'reference': lambda *a: kernels.selective_scan_reference(*a, chunk=4),
    'pallas': lambda *a: kernels.selective_scan_pallas(*a, chunk=4, block_d=4, interpret=True),
}


@pytest.mark.parametrize('impl', sorted(IMPLS))
def test_forward_and_gradients_match_numpy_recurrence(impl):
  args = _inputs()   # l=11 is not a multiple of chunk=4, d=6 not of block_d=4: both padded
  fn = IMPLS[impl]
  as32 = [jnp.asarray(a, jnp.float32) for a in args]
  ct = np.random.default_rng(1).standard_normal(args[0].shape)
  y, vjp = jax.vjp(fn, *as32)
  np.testing.assert_allclose(np.asarray(y), numpy_scan(*args), rtol=1e-4, atol=1e-4)
  grads = vjp(jnp.asarray(ct, jnp.float32))
  rng = np.random.default_rng(2)
  eps = 1e-5
  for which, g in enumerate(grads):     # d <ct, y> / d arg at 5 random entries per argument
    assert g.shape == args[which].shape
    for _ in range(5):
      idx = tuple(rng.integers(0, s) for s in args[which].shape)
      plus = [a.copy() for a in args]
      minus = [a.copy() for a in args]
      plus[which][idx] += eps
      minus[which][idx] -= eps
      want = np.sum(ct * (numpy_scan(*plus) - numpy_scan(*minus))) / (2 * eps)
      np.testing.assert_allclose(float(g[idx]), want, rtol=2e-3, atol=2e-3,
                                 err_msg=f'{impl}: gradient of argument {which} at {idx}')


def test_switch_picks_implementations_and_they_agree():
  args = [jnp.asarray(a, jnp.float32) for a in _inputs(b=1, l=9, d=5, n=3, seed=3)]
  ref = selective_scan(*args, impl='xla')
  pallas = selective_scan(*args, impl='pallas', chunk=4)
  auto = selective_scan(*args, impl='auto')      # CPU: the reference
  np.testing.assert_allclose(np.asarray(pallas), np.asarray(ref), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(auto), np.asarray(ref), rtol=1e-6, atol=1e-6)
  assert kernels.resolve_impl('auto', kernels.SCAN_IMPLS, 'tpu') == 'pallas'
  assert kernels.resolve_impl('auto', kernels.SCAN_IMPLS, 'gpu') == 'xla'
  with pytest.raises(ValueError, match='A must be'):
    selective_scan(args[0], args[1], args[2][:2], *args[3:], impl='xla')
  with pytest.raises(ValueError, match='Unknown impl'):
    selective_scan(*args, impl='cuda')


def test_pallas_scan_on_a_mesh_runs_per_device_and_matches_reference():
  from mmjax.core import partitioning  # pylint: disable=g-import-not-at-top
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  mesh = partitioning.make_mesh({'data': 2, 'fsdp': 2, 'tensor': 2}, devices=jax.devices()[:8])
  args = [jnp.asarray(a, jnp.float32) for a in _inputs(b=4, l=6, d=8, n=3, seed=4)]
  loss = lambda impl: lambda *a: jnp.sum(jnp.sin(selective_scan(*a, impl=impl, chunk=4)))
  with partitioning.axis_rules(mesh, partitioning.DEFAULT_RULES):
    got = jax.jit(jax.value_and_grad(loss('pallas'), argnums=tuple(range(6))))(*args)
    jaxpr = str(jax.make_jaxpr(loss('pallas'))(*args))
  want = jax.jit(jax.value_and_grad(loss('xla'), argnums=tuple(range(6))))(*args)
  assert 'shard_map' in jaxpr
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-4)
