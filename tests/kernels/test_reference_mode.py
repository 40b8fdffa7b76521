"""Inside `backend.reference()` every kernel is its pure-JAX reference (how model FLOPs are
counted); outside it the Pallas kernel is what gets traced."""

import jax
import jax.numpy as jnp
import numpy as np

from mmjax import kernels
from mmjax.kernels import backend


def _walk(jaxpr, out: set) -> set:
  for e in jaxpr.eqns:
    out.add(e.primitive.name)
    for v in e.params.values():
      for sub in (v if isinstance(v, (tuple, list)) else (v,)):
        inner = getattr(sub, 'jaxpr', sub)
        if hasattr(inner, 'eqns'):
          _walk(inner, out)
  return out


def _primitives(fn, *args) -> set[str]:
  """Every primitive of `fn`'s jaxpr, nested ones (custom_vjp, pjit, shard_map) included."""
  return _walk(jax.make_jaxpr(fn)(*args).jaxpr, set())


def test_reference_mode_replaces_every_kernel():
  q = jnp.asarray(np.random.default_rng(0).normal(size=(1, 32, 2, 8)), jnp.float32)
  lhs, rhs = jnp.ones((12, 8)), jnp.ones((3, 8, 4))
  sizes = jnp.array([5, 4, 3], jnp.int32)
  calls = {
      'attention': lambda q: kernels.attention(q, q, q, impl='pallas'),
      'routed': lambda q: kernels.routed_attention(q, q, q, block_size=8, top_k=2),
      'ragged': lambda q: kernels.ragged_matmul(lhs, rhs, sizes, impl='pallas'),
  }
  for name, fn in calls.items():
    assert 'pallas_call' in _primitives(fn, q), name
    jax.clear_caches()
    with backend.reference():
      assert backend.use_reference()
      assert 'pallas_call' not in _primitives(fn, q), name
    jax.clear_caches()
  assert not backend.use_reference()
  with backend.reference():
    got = kernels.routed_attention(q, q, q, block_size=8, top_k=2)
  want = kernels.routed_attention_reference(q, q, q, block_size=8, top_k=2)
  np.testing.assert_array_equal(got, want)
