"""Routed (BiFormer) attention against a direct numpy implementation of its definition."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.kernels import route_blocks, routed_attention, routed_attention_reference

FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def _numpy_routed(q, k, v, block_size, top_k, mask=None):
  """Loops straight from the definition: means of each block's real tokens, top-k by affinity
  among blocks holding a real token (then the rest; ties: lower index), and each query over the
  routed keys of its own kind (real with real, padding with padding; none: zeros)."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  batch, length, heads, head_dim = q.shape
  mask = np.ones((batch, length), int) if mask is None else np.asarray(mask)
  blocks = length // block_size
  out = np.zeros_like(q)
  routes = np.zeros((batch, blocks, top_k), np.int64)
  for b in range(batch):
    def desc(x, j):
      rows = [t for t in range(j * block_size, (j + 1) * block_size) if mask[b, t]]
      return x[b, rows].reshape(len(rows), -1).mean(0) if rows else np.zeros(heads * head_dim)
    real = [mask[b, j * block_size:(j + 1) * block_size].any() for j in range(blocks)]
    for i in range(blocks):
      affinity = [float(desc(q, i) @ desc(k, j)) for j in range(blocks)]
      chosen = sorted(range(blocks), key=lambda j: (not real[j], -affinity[j], j))[:top_k]
      routes[b, i] = chosen
      keys = np.concatenate([np.arange(j * block_size, (j + 1) * block_size) for j in chosen])
      for t in range(i * block_size, (i + 1) * block_size):
        same = keys[mask[b, keys] == mask[b, t]]
        for h in range(heads):
          if len(same):
            s = k[b, same, h] @ q[b, t, h] / math.sqrt(head_dim)
            p = np.exp(s - s.max())
            out[b, t, h] = (p / p.sum()) @ v[b, same, h]
  return out, routes


def _inputs(shape, dtype, seed=0):
  rng = np.random.default_rng(seed)
  return [jnp.asarray(rng.standard_normal(shape, np.float32), dtype) for _ in range(4)]


def _value_and_grads(fn, q, k, v, ct):
  def run(q, k, v, ct):
    out, vjp = jax.vjp(fn, q, k, v)
    return out, vjp(ct)
  return jax.jit(run, compiler_options=FAST_COMPILE)(q, k, v, ct)


def _close(actual, expected, tol):
  np.testing.assert_allclose(np.asarray(actual, np.float32), np.asarray(expected, np.float32),
                             atol=tol, rtol=tol)


@pytest.mark.parametrize('dtype,length,block_size,top_k,backend', [
    (jnp.float32, 16, 4, 2, 'cpu'),
    (jnp.bfloat16, 24, 6, 3, 'gpu'),   # tile padded 6 -> 16 (GPU layout, interpreted)
])
def test_routed_matches_definition(dtype, length, block_size, top_k, backend):
  q, k, v, ct = _inputs((2, length, 2, 8), dtype)
  expected, routes = _numpy_routed(q, k, v, block_size, top_k)
  np.testing.assert_array_equal(np.sort(np.asarray(route_blocks(q, k, block_size, top_k)), -1),
                                np.sort(routes, -1))
  kernel = lambda q, k, v: routed_attention(q, k, v, block_size=block_size, top_k=top_k,
                                            backend=backend, interpret=True)
  ref = lambda q, k, v: routed_attention_reference(q, k, v, block_size=block_size, top_k=top_k)
  out, grads = _value_and_grads(kernel, q, k, v, ct)
  ref_out, ref_grads = _value_and_grads(ref, q, k, v, ct)
  tol = 2e-2 if dtype == jnp.bfloat16 else 2e-5
  assert out.dtype == dtype
  _close(out, expected, tol)
  _close(ref_out, expected, tol)
  for g, r in zip(grads, ref_grads):
    _close(g, r, 3 * tol)


@pytest.mark.parametrize('backend', ['cpu', 'gpu', 'tpu'])
def test_padding_is_masked_and_never_routed(backend):
  """Example 0: 5 real tokens (blocks 2, 3 all padding); example 1: 9 real (block 3 padding),
  and one example with top_k > real blocks. Kernel (interpreted, each layout), reference and
  the numpy definition agree, all-padding blocks lose the routing to every real block, and the
  real tokens' outputs and gradients ignore whatever the padding holds."""
  q, k, v, ct = _inputs((3, 16, 2, 8), jnp.float32, seed=3)
  mask = np.zeros((3, 16), np.int32)
  mask[0, :5], mask[1, :9], mask[2, :3] = 1, 1, 1
  seg = jnp.asarray(mask)
  expected, routes = _numpy_routed(q, k, v, 4, 2, mask)
  got_routes = np.asarray(route_blocks(q, k, 4, 2, seg))
  np.testing.assert_array_equal(np.sort(got_routes, -1), np.sort(routes, -1))
  assert set(got_routes[0].ravel()) == {0, 1} and set(got_routes[2].ravel()) == {0, 1}
  assert not np.isin(got_routes[1], [3]).any()
  kernel = lambda q, k, v: routed_attention(q, k, v, block_size=4, top_k=2, segment_ids=seg,
                                            backend=backend, interpret=True)
  ref = lambda q, k, v: routed_attention_reference(q, k, v, block_size=4, top_k=2,
                                                   segment_ids=seg)
  out, grads = _value_and_grads(kernel, q, k, v, ct)
  ref_out, ref_grads = _value_and_grads(ref, q, k, v, ct)
  _close(out, expected, 2e-5)
  _close(ref_out, expected, 2e-5)
  for g, r in zip(grads, ref_grads):
    _close(g, r, 6e-5)
  real = jnp.asarray(mask)[..., None, None]
  noise = lambda x, s: jnp.where(real == 1, x, 50.0 * _inputs(x.shape, x.dtype, seed=s)[0])
  noisy_out, noisy_grads = _value_and_grads(kernel, noise(q, 7), noise(k, 8), noise(v, 9),
                                            ct * real)
  np.testing.assert_allclose(np.asarray(noisy_out * real), np.asarray(out * real), atol=1e-5)
  for g, r in zip(noisy_grads, _value_and_grads(kernel, q, k, v, ct * real)[1]):
    np.testing.assert_allclose(np.asarray(g * real), np.asarray(r * real), atol=1e-5)


def test_given_routes_are_used():
  """Routes passed in (e.g. computed from all heads before sharding) replace the routing."""
  q, k, v, _ = _inputs((1, 12, 2, 8), jnp.float32, seed=4)
  routes = jnp.asarray([[[2], [0], [1]]], jnp.int32)
  out = routed_attention(q, k, v, block_size=4, top_k=1, routes=routes, interpret=True)
  ref = routed_attention_reference(q, k, v, block_size=4, top_k=1, routes=routes)
  qb, kb, vb = (np.asarray(x, np.float64).reshape(3, 4, 2, 8) for x in (q, k, v))
  for i, j in enumerate([2, 0, 1]):
    s = np.einsum('qhd,khd->hqk', qb[i], kb[j]) / math.sqrt(8)
    p = np.exp(s - s.max(-1, keepdims=True))
    want = np.einsum('hqk,khd->qhd', p / p.sum(-1, keepdims=True), vb[j])
    _close(np.asarray(out).reshape(3, 4, 2, 8)[i], want, 2e-5)
    _close(np.asarray(ref).reshape(3, 4, 2, 8)[i], want, 2e-5)
  with pytest.raises(ValueError, match='routes must be'):
    routed_attention(q, k, v, block_size=4, top_k=1, routes=routes[:, :2], interpret=True)


def test_tpu_grid_and_unrouted_key_blocks():
  """TPU grid (tile 6 -> 8): key blocks 0 and 1 win every query block, so 2 gets no gradient."""
  q, k, v, ct = _inputs((2, 18, 2, 8), jnp.float32, seed=1)
  q = jnp.abs(q)
  k = jnp.concatenate([jnp.abs(k[:, :12]) + 2.0, -jnp.abs(k[:, 12:])], axis=1)
  expected, routes = _numpy_routed(q, k, v, 6, 2)
  np.testing.assert_array_equal(np.sort(routes, -1), np.broadcast_to([0, 1], routes.shape))
  kernel = lambda q, k, v: routed_attention(q, k, v, block_size=6, top_k=2, backend='tpu',
                                            interpret=True)
  ref = lambda q, k, v: routed_attention_reference(q, k, v, block_size=6, top_k=2)
  out, grads = _value_and_grads(kernel, q, k, v, ct)
  _, ref_grads = _value_and_grads(ref, q, k, v, ct)
  _close(out, expected, 2e-5)
  for g, r in zip(grads, ref_grads):
    _close(g, r, 6e-5)
  np.testing.assert_array_equal(np.asarray(grads[1][:, 12:]), 0.0)
  np.testing.assert_array_equal(np.asarray(grads[2][:, 12:]), 0.0)
  assert float(jnp.abs(grads[2][:, :12]).sum()) > 0


def test_ties_go_to_lower_block_index():
  """Key blocks that are permutations of one block have exactly equal descriptors."""
  rng = np.random.default_rng(2)
  base = rng.integers(-2, 3, (1, 4, 2, 4)).astype(np.float32) / 2      # exact in float32
  k = np.concatenate([np.roll(base, j, axis=1) for j in range(4)], axis=1)
  q = rng.integers(-2, 3, (1, 16, 2, 4)).astype(np.float32) / 2
  v = rng.standard_normal((1, 16, 2, 4)).astype(np.float32)
  routes = np.asarray(route_blocks(jnp.asarray(q), jnp.asarray(k), 4, 2))
  np.testing.assert_array_equal(np.sort(routes, -1), [[[0, 1]] * 4])
  expected, numpy_routes = _numpy_routed(q, k, v, 4, 2)
  np.testing.assert_array_equal(numpy_routes, [[[0, 1]] * 4])
  run = jax.jit(lambda q, k, v: routed_attention(q, k, v, block_size=4, top_k=2),
                compiler_options=FAST_COMPILE)
  out = run(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v))
  _close(out, expected, 2e-5)


@pytest.mark.parametrize('kwargs,match', [
    (dict(block_size=5), 'not divisible by block_size'),
    (dict(top_k=5), r'top_k must be an int in \[1, 4\]'),
    (dict(top_k=0), 'top_k'),
    (dict(k=np.zeros((1, 8, 2, 4), np.float32), v=np.zeros((1, 8, 2, 4), np.float32)),
     'same shape'),
    (dict(v=np.zeros((1, 16, 2, 4), np.float16)), 'dtype'),
])
def test_bad_input_raises(kwargs, match):
  args = dict(q=np.zeros((1, 16, 2, 4), np.float32), k=np.zeros((1, 16, 2, 4), np.float32),
              v=np.zeros((1, 16, 2, 4), np.float32), block_size=4, top_k=2)
  args.update(kwargs)
  q, k, v = (jnp.asarray(args.pop(n)) for n in ('q', 'k', 'v'))
  with pytest.raises(ValueError, match=match):
    routed_attention(q, k, v, interpret=True, **args)
