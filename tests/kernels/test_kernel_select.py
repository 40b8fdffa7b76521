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


def test_cudnn_gets_bf16_and_sequence_lengths_not_a_mask(monkeypatch):
  """GPU mocked: the call reaching jax.nn.dot_product_attention has bf16 q/k/v, no mask, and
  per-example lengths; its answer (the reference over the real tokens) comes back in f32."""
  calls = []

  def fake(q, k, v, bias=None, mask=None, *, scale=None, is_causal=False,
           query_seq_lengths=None, key_value_seq_lengths=None, implementation=None, **kw):
    calls.append(dict(dtypes={x.dtype for x in (q, k, v)}, mask=mask, bias=bias,
                      q_len=query_seq_lengths, kv_len=key_value_seq_lengths, impl=implementation))
    seg = (jnp.arange(q.shape[1])[None] < key_value_seq_lengths[:, None]).astype(jnp.int32)
    return attention_reference(q.astype(jnp.float32), k.astype(jnp.float32),
                               v.astype(jnp.float32), segment_ids=seg).astype(q.dtype)

  monkeypatch.setattr(jax.nn, 'dot_product_attention', fake)
  rng = np.random.default_rng(3)
  q, k, v = [jnp.asarray(rng.standard_normal((2, 16, 2, 8), np.float32)) for _ in range(3)]
  mask = jnp.asarray(np.arange(16)[None] < np.array([[16], [11]]), jnp.int32)
  out = attention(q, k, v, impl='auto', segment_ids=mask, backend='gpu')
  (call,) = calls
  assert call['dtypes'] == {jnp.dtype(jnp.bfloat16)} and call['impl'] == 'cudnn'
  assert call['mask'] is None and call['bias'] is None
  np.testing.assert_array_equal(call['q_len'], [16, 11])
  np.testing.assert_array_equal(call['kv_len'], [16, 11])
  assert out.dtype == jnp.float32
  want = attention_reference(q, k, v, segment_ids=mask)
  real = np.asarray(mask, bool)
  np.testing.assert_allclose(np.asarray(out)[real], np.asarray(want)[real], atol=3e-2, rtol=3e-2)
