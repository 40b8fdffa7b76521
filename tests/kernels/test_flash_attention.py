"""Flash attention (Pallas, interpret mode) against the XLA reference and a numpy loop."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.kernels import attention_reference, flash_attention
from mmjax.kernels.attention_tiles import Tiling
from mmjax.kernels.block_pairs import dense_pairs
from mmjax.kernels.block_sparse_attention import block_sparse_attention

# Interpret-mode kernels are big HLO programs: compile them with cheap LLVM passes.
FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}
TOL = {jnp.float32: dict(fwd=2e-5, grad=5e-5), jnp.bfloat16: dict(fwd=2e-2, grad=6e-2)}


def _inputs(batch, q_len, kv_len, heads, head_dim, dtype, seed=0):
  rng = np.random.default_rng(seed)
  shapes = [(batch, q_len, heads, head_dim), (batch, kv_len, heads, head_dim),
            (batch, kv_len, heads, head_dim), (batch, q_len, heads, head_dim)]
  return [jnp.asarray(rng.standard_normal(s, np.float32), dtype) for s in shapes]


def _segments(batch, length):
  """Packed sequences of uneven lengths, the tail of row 0 being padding (id 0)."""
  ids = np.zeros((batch, length), np.int32)
  ids[0, : length // 3] = 1
  ids[0, length // 3: length - 5] = 2
  ids[1:] = 7
  ids[1:, length // 2:] = 8
  return jnp.asarray(ids)


def _value_and_grads(fn, q, k, v, ct):
  def run(q, k, v, ct):
    out, vjp = jax.vjp(fn, q, k, v)
    return out, vjp(ct)
  return jax.jit(run, compiler_options=FAST_COMPILE)(q, k, v, ct)


def _assert_close(actual, expected, tol):
  actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
  scale = max(1.0, float(np.max(np.abs(expected))))
  np.testing.assert_allclose(actual, expected, atol=tol * scale, rtol=tol)


def _numpy_attention(q, k, v, segment_ids, causal):
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  batch, q_len, heads, head_dim = q.shape
  out = np.zeros_like(q)
  for b in range(batch):
    for h in range(heads):
      for i in range(q_len):
        allowed = [j for j in range(k.shape[1])
                   if (not causal or j <= i)
                   and (segment_ids is None or segment_ids[b, i] == segment_ids[b, j])]
        if not allowed:
          continue
        s = np.array([q[b, i, h] @ k[b, j, h] for j in allowed]) / math.sqrt(head_dim)
        p = np.exp(s - s.max())
        out[b, i, h] = (p / p.sum()) @ v[b, allowed, h]
  return out


def test_reference_matches_numpy_loop():
  q, k, v, _ = _inputs(2, 12, 12, 2, 4, jnp.float32)
  seg = _segments(2, 12)
  ref = jax.jit(attention_reference, static_argnames='causal')
  for causal in (False, True):
    expected = _numpy_attention(q, k, v, np.asarray(seg), causal)
    _assert_close(ref(q, k, v, segment_ids=seg, causal=causal), expected, 1e-5)


CASES = [  # (dtype, q_len, kv_len, segments, causal, backend, blocks, head_dim)
    (jnp.float32, 32, 40, False, False, 'cpu', (16, 16), 8),   # kv_len not a block multiple
    (jnp.float32, 40, 40, True, True, 'cpu', (16, 8), 8),      # padded, two block sizes
    (jnp.bfloat16, 24, 24, True, False, 'cpu', (16, 16), 8),
    (jnp.float32, 40, 40, True, True, 'tpu', (128, 128), 8),   # TPU grid, interpreted
    (jnp.float32, 20, 20, False, True, 'gpu', (16, 16), 6),    # GPU layout, head_dim padded
]


@pytest.mark.parametrize('dtype,q_len,kv_len,segments,causal,backend,blocks,head_dim', CASES)
def test_flash_matches_reference(dtype, q_len, kv_len, segments, causal, backend, blocks,
                                 head_dim):
  q, k, v, ct = _inputs(2, q_len, kv_len, 2, head_dim, dtype)
  seg = _segments(2, q_len) if segments else None
  kernel = lambda q, k, v: flash_attention(
      q, k, v, segment_ids=seg, causal=causal, block_q=blocks[0], block_k=blocks[1],
      backend=backend, interpret=True)
  ref = lambda q, k, v: attention_reference(q, k, v, segment_ids=seg, causal=causal)
  out, grads = _value_and_grads(kernel, q, k, v, ct)
  ref_out, ref_grads = _value_and_grads(ref, q, k, v, ct)
  assert out.dtype == dtype and out.shape == q.shape
  _assert_close(out, ref_out, TOL[dtype]['fwd'])
  for g, r in zip(grads, ref_grads):
    assert g.dtype == dtype
    _assert_close(g, r, TOL[dtype]['grad'])


def test_default_blocks_and_scale():
  q, k, v, _ = _inputs(1, 20, 20, 1, 8, jnp.float32, seed=3)
  out = jax.jit(lambda q, k, v: flash_attention(q, k, v, sm_scale=0.5),
                compiler_options=FAST_COMPILE)(q, k, v)
  _assert_close(out, attention_reference(q, k, v, sm_scale=0.5), 2e-5)


def test_fully_masked_rows_give_zeros_and_finite_grads():
  """Queries whose segment id matches no key get zero output and zero, finite gradients."""
  q, k, v, ct = _inputs(1, 16, 16, 1, 8, jnp.float32, seed=1)
  q_ids = jnp.asarray([[0] * 8 + [5] * 8], jnp.int32)        # id 5 has no key
  k_ids = jnp.zeros((1, 16), jnp.int32)
  tiling = Tiling(block_q=8, block_k=8, sm_scale=0.3, causal=False, kv_len=None,
                  kv_block_valid=None, driver='gpu', interpret=True, batched_tables=False)
  pairs = dense_pairs(2, 2, 8, 8, False)
  fn = lambda q, k, v: block_sparse_attention(tiling, q, k, v, q_ids, k_ids, pairs)
  out, (dq, dk, dv) = _value_and_grads(fn, q, k, v, ct)
  assert np.all(np.isfinite(out)) and np.all(np.isfinite(dq))
  np.testing.assert_array_equal(np.asarray(out[:, 8:]), 0.0)
  np.testing.assert_array_equal(np.asarray(dq[:, 8:]), 0.0)
  _assert_close(out[:, :8], attention_reference(q[:, :8], k, v, sm_scale=0.3), 2e-5)
  assert np.all(np.isfinite(dk)) and np.all(np.isfinite(dv))


@pytest.mark.parametrize('kwargs,match', [
    (dict(k=np.zeros((2, 16, 2, 4), np.float32), v=np.zeros((2, 16, 2, 4), np.float32)),
     'head_dim'),
    (dict(v=np.zeros((2, 12, 2, 8), np.float32)), 'k and v shapes differ'),
    (dict(q=np.zeros((2, 16, 2, 8), np.float16)), 'dtype'),
    (dict(q=np.zeros((2, 16, 16), np.float32)), r'\[batch, length, heads, head_dim\]'),
    (dict(segment_ids=np.zeros((2, 15), np.int32)), 'segment_ids'),
    (dict(causal=True, k=np.zeros((2, 8, 2, 8), np.float32),
          v=np.zeros((2, 8, 2, 8), np.float32)), 'equal q and kv lengths'),
    (dict(block_q=12, backend='tpu'), 'multiples of 128'),
    (dict(block_k=24, backend='gpu'), 'powers of two'),
])
def test_bad_input_raises(kwargs, match):
  args = dict(q=np.zeros((2, 16, 2, 8), np.float32), k=np.zeros((2, 16, 2, 8), np.float32),
              v=np.zeros((2, 16, 2, 8), np.float32))
  args.update(kwargs)
  q, k, v = (jnp.asarray(args.pop(n)) for n in ('q', 'k', 'v'))
  with pytest.raises(ValueError, match=match):
    flash_attention(q, k, v, interpret=True, **args)
