"""The cuDNN path's mask handling, on the CPU: `jax.nn.dot_product_attention(implementation=
'cudnn')` is replaced by an emulation of its documented semantics (bf16 inputs; a boolean
`mask [B, 1|N, T, S]` filters logits; `query/key_value_seq_lengths` mask keys past the length
and zero queries past it; a training bias needs even T and S; an all-masked row is undefined),
so the arguments `select.cudnn_attention` derives from the model's padding layouts are checked
against the 'xla' path on the real tokens."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.kernels import attention, backend
from mmjax.kernels import select
from mmjax.models.attention import attend


def _emulated_cudnn(calls):
  def run(q, k, v, bias=None, mask=None, *, scale=None, is_causal=False, query_seq_lengths=None,
          key_value_seq_lengths=None):
    assert {x.dtype for x in (q, k, v)} == {jnp.dtype(jnp.bfloat16)} and bias is None
    b, t, heads, d = q.shape
    s_len = k.shape[1]
    calls.append(dict(mask=mask, lengths=query_seq_lengths))
    s = jnp.einsum('bqhd,bkhd->bhqk', q.astype(jnp.float32), jnp.repeat(
        k.astype(jnp.float32), heads // k.shape[2], 2)) * (scale or 1 / np.sqrt(d))
    allowed = jnp.ones((b, 1, t, s_len), bool)
    if mask is not None:
      assert mask.dtype == jnp.bool_ and mask.shape[2:] == (t, s_len)
      assert t % 2 == 0 and s_len % 2 == 0, 'cuDNN training with a bias needs even lengths'
      allowed &= mask
    q_ok = jnp.ones((b, t), bool)
    if key_value_seq_lengths is not None:
      assert query_seq_lengths.dtype == jnp.int32 and key_value_seq_lengths.shape == (b,)
      allowed &= (jnp.arange(s_len)[None] < key_value_seq_lengths[:, None])[:, None, None]
      q_ok = jnp.arange(t)[None] < query_seq_lengths[:, None]
    if is_causal:
      allowed &= jnp.tril(jnp.ones((t, s_len), bool))
    rows = jnp.any(allowed, -1) | ~q_ok[:, None]   # False: a row with every key masked
    jax.debug.callback(lambda ok: calls.append(dict(rows_ok=bool(ok))), jnp.all(rows))
    p = jax.nn.softmax(jnp.where(allowed, s, -jnp.inf), axis=-1)
    o = jnp.einsum('bhqk,bkhd->bqhd', p, jnp.repeat(v.astype(jnp.float32),
                                                     heads // v.shape[2], 2))
    return jnp.where(q_ok[:, :, None, None], o, 0).astype(q.dtype)
  return run


def _qkv(length, heads=4, kv_heads=2, seed=0):
  rng = np.random.default_rng(seed)
  shapes = [(2, length, heads, 8), (2, length, kv_heads, 8), (2, length, kv_heads, 8)]
  return [jnp.asarray(rng.standard_normal(s, np.float32)) for s in shapes]


def _windows_mask():
  """A 5x5 patch grid in 2x2 windows, padded to 6x6 and listed window by window (regions.py):
  padding inside the sequence; example 1 also has its last window's padding."""
  grid = np.zeros((6, 6), np.int32)
  grid[:5, :5] = 1
  order = np.arange(36).reshape(3, 2, 3, 2).transpose(0, 2, 1, 3).reshape(-1)
  m = grid.reshape(-1)[order]
  return np.stack([m, m])


LAYOUTS = {  # name -> mask [2, length] (1 = real) the model produces
    'windows': _windows_mask(),
    'cls_region': np.concatenate([np.tile([[1, 0, 0, 0]], (2, 1)),
                                  np.ones((2, 12), np.int32)], 1),       # CLS + its padded region
    'fused_text_first': np.concatenate([np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]]),
                                        np.ones((2, 9), np.int32)], 1),  # odd length: 15
}


@pytest.mark.parametrize('layout', sorted(LAYOUTS))
def test_cudnn_honours_padding_inside_the_sequence(layout, monkeypatch):
  calls = []
  monkeypatch.setattr(select, '_cudnn_dot_product_attention', _emulated_cudnn(calls))
  mask = jnp.asarray(LAYOUTS[layout])
  q, k, v = _qkv(mask.shape[1])
  noise = jnp.asarray(np.random.default_rng(5).standard_normal(k.shape), jnp.float32) * 10
  pad = (mask == 0)[:, :, None, None]

  @jax.jit
  def run(q, k, v):
    with backend.target('gpu'):   # the model's own call, as a GPU would trace it
      out = attend(q, k, v, mask, 'cudnn')
      moved = attend(q, jnp.where(pad, k + noise, k), jnp.where(pad, v - noise, v), mask,
                     'cudnn')
    return out, moved, attend(q, k, v, mask, 'xla')
  out, moved, want = run(q, k, v)
  call = calls[0]
  assert call['mask'] is not None and call['lengths'] is None   # a mask, not lengths
  assert all(c['rows_ok'] for c in calls if 'rows_ok' in c)      # (undefined in cuDNN)
  real = np.asarray(mask) > 0
  np.testing.assert_allclose(out, want, atol=3e-2)   # padding too: it sees only padding
  # Only padding values change: real outputs must not move (they did by up to 0.95 with
  # lengths = sum(mask)).
  np.testing.assert_allclose(np.asarray(moved)[real], np.asarray(out)[real], atol=1e-6)


def test_cudnn_takes_trailing_padding_as_lengths(monkeypatch):
  calls = []
  monkeypatch.setattr(select, '_cudnn_dot_product_attention', _emulated_cudnn(calls))
  mask = jnp.asarray(np.arange(16)[None] < np.array([[16], [11]]), jnp.int32)
  q, k, v = _qkv(16)
  def run(q, k, v):
    with backend.target('gpu'):
      return attend(q, k, v, mask, 'cudnn', trailing_padding=True)
  out = jax.jit(run)(q, k, v)
  call = calls[0]
  assert call['mask'] is None and call['lengths'] is not None
  want = attention(q, k, v, impl='xla', segment_ids=mask)
  real = np.asarray(mask) > 0
  np.testing.assert_allclose(np.asarray(out)[real], np.asarray(want)[real], atol=3e-2)


def test_cudnn_segments_and_lengths_causal_match_xla(monkeypatch):
  """Packed sequences (several ids > 0) plus padding past `lengths`, causal: the mask folds
  the lengths in and the result equals the reference (zeros past the lengths)."""
  monkeypatch.setattr(select, '_cudnn_dot_product_attention', _emulated_cudnn([]))
  q, k, v = _qkv(12)
  seg = jnp.asarray([[1] * 5 + [2] * 7, [3] * 12], jnp.int32)
  lengths = jnp.asarray([9, 12], jnp.int32)
  out, want = jax.jit(lambda q, k, v: [
      attention(q, k, v, impl=impl, segment_ids=seg, lengths=lengths, causal=True,
                backend='gpu' if impl == 'cudnn' else None) for impl in ('cudnn', 'xla')])(q, k, v)
  np.testing.assert_allclose(out, want, atol=3e-2)
