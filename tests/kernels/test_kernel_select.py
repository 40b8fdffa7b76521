"""The implementation switch: attention(impl=...) and ragged_matmul(impl=...)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.kernels import (ATTENTION_IMPLS, RAGGED_MATMUL_IMPLS, attention, attention_reference,
                           ragged_matmul, resolve_impl)

FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def _qkv():
  rng = np.random.default_rng(0)
  return [jnp.asarray(rng.standard_normal((1, 16, 2, 8), np.float32)) for _ in range(3)]


def test_auto_picks_by_backend():
  assert resolve_impl('auto', ('auto', 'xla', 'pallas'), 'cpu') == 'xla'
  assert resolve_impl('auto', ('auto', 'xla', 'pallas'), 'gpu') == 'xla'
  assert resolve_impl('auto', ('auto', 'xla', 'pallas'), 'tpu') == 'pallas'


def test_attention_impls_agree_on_cpu():
  q, k, v = _qkv()
  seg = jnp.asarray([[1] * 10 + [2] * 6], jnp.int32)
  expected = attention_reference(q, k, v, segment_ids=seg, causal=True)
  run = jax.jit(lambda q, k, v: [attention(q, k, v, impl=impl, segment_ids=seg, causal=True)
                                 for impl in ('auto', 'xla', 'pallas')],
                compiler_options=FAST_COMPILE)
  for out in run(q, k, v):
    np.testing.assert_allclose(out, expected, atol=2e-5, rtol=2e-5)


def test_cudnn_off_gpu_names_the_backend():
  q, k, v = _qkv()
  with pytest.raises(ValueError, match="needs a GPU, but the backend is 'cpu'"):
    attention(q, k, v, impl='cudnn')


def test_unknown_impl_lists_accepted():
  q, k, v = _qkv()
  with pytest.raises(ValueError, match='accepted: auto, xla, pallas, cudnn'):
    attention(q, k, v, impl='flash')
  with pytest.raises(ValueError, match='accepted: auto, xla, pallas'):
    ragged_matmul(q[0, :, 0], jnp.zeros((2, 8, 4)), jnp.ones((2,), jnp.int32), impl='gmm')


def test_ragged_matmul_impls_agree():
  rng = np.random.default_rng(1)
  lhs = jnp.asarray(rng.standard_normal((12, 8), np.float32))
  rhs = jnp.asarray(rng.standard_normal((3, 8, 4), np.float32))
  sizes = jnp.asarray([5, 0, 4], jnp.int32)
  expected = np.asarray(lhs) @ np.asarray(rhs[0])
  expected[5:] = 0.0
  expected[5:9] = np.asarray(lhs[5:9]) @ np.asarray(rhs[2])
  run = jax.jit(lambda a, b, s: [ragged_matmul(a, b, s, impl=impl)
                                 for impl in ('auto', 'xla', 'pallas')],
                compiler_options=FAST_COMPILE)
  for out in run(lhs, rhs, sizes):
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_auto_on_gpu_is_cudnn_attention_and_xla_ragged_dot():
  assert resolve_impl('auto', ATTENTION_IMPLS, 'gpu') == 'cudnn'
  assert resolve_impl('auto', RAGGED_MATMUL_IMPLS, 'gpu') == 'xla'
  assert resolve_impl('auto', ATTENTION_IMPLS, 'tpu') == 'pallas'
  assert resolve_impl('auto', RAGGED_MATMUL_IMPLS, 'cpu') == 'xla'
  # cuDNN only where it takes the head dim (a multiple of 8, at most 128), else XLA.
  assert resolve_impl('auto', ATTENTION_IMPLS, 'gpu', head_dim=64) == 'cudnn'
  assert resolve_impl('auto', ATTENTION_IMPLS, 'gpu', head_dim=12) == 'xla'
  assert resolve_impl('auto', ATTENTION_IMPLS, 'gpu', head_dim=256) == 'xla'
