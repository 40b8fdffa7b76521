"""Flash attention block skipping (padding lengths, segment ids) and grouped-query attention,
in interpret mode on every driver, against the XLA reference and a numpy loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.kernels import attention_reference, flash_attention
from mmjax.kernels.attention_skip import masked_segments, valid_blocks
from mmjax.kernels.block_pairs import masked_pairs
from test_flash_attention import _assert_close, _value_and_grads

TOL = dict(fwd=2e-5, grad=5e-5)


def _qkv(batch, length, heads, kv_heads, head_dim, seed=0):
  rng = np.random.default_rng(seed)
  shapes = [(batch, length, heads, head_dim), (batch, length, kv_heads, head_dim),
            (batch, length, kv_heads, head_dim), (batch, length, heads, head_dim)]
  return [jnp.asarray(rng.standard_normal(s, np.float32)) for s in shapes]


def _numpy_attention(q, k, v, seg, lengths):
  """float64 loop: query head h uses kv head h // group; padding sees and is seen by nothing."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  batch, length, heads, head_dim = q.shape
  group = heads // k.shape[2]
  out = np.zeros_like(q)
  for b in range(batch):
    for h in range(heads):
      for i in range(min(length, lengths[b])):
        keys = [j for j in range(min(length, lengths[b])) if seg[b, i] == seg[b, j]]
        s = np.array([q[b, i, h] @ k[b, j, h // group] for j in keys]) / np.sqrt(head_dim)
        p = np.exp(s - s.max())
        out[b, i, h] = (p / p.sum()) @ v[b, keys, h // group]
  return out


CASES = [  # (backend, length, blocks, heads, kv_heads, causal)
    ('cpu', 40, (8, 8), 4, 2, False),
    ('cpu', 40, (16, 8), 4, 1, True),
    ('gpu', 32, (16, 16), 2, 2, False),
    ('gpu', 48, (16, 16), 6, 3, True),
    ('tpu', 260, (128, 128), 4, 2, False),
]


@pytest.mark.parametrize('backend,length,blocks,heads,kv_heads,causal', CASES)
def test_lengths_segments_gqa_match_reference(backend, length, blocks, heads, kv_heads, causal):
  batch = 3
  q, k, v, ct = _qkv(batch, length, heads, kv_heads, 8)
  seg = np.zeros((batch, length), np.int32)
  seg[0, length // 3:] = 1                      # two packed sequences
  seg[1, : length // 4], seg[1, length // 4:] = 4, 5
  lengths = np.asarray([length - 5, length // 2, 3], np.int32)   # padding, one very short
  seg, lengths = jnp.asarray(seg), jnp.asarray(lengths)
  kernel = lambda q, k, v: flash_attention(
      q, k, v, segment_ids=seg, lengths=lengths, causal=causal, block_q=blocks[0],
      block_k=blocks[1], backend=backend, interpret=True)
  ref = lambda q, k, v: attention_reference(q, k, v, segment_ids=seg, lengths=lengths,
                                            causal=causal)
  out, grads = _value_and_grads(kernel, q, k, v, ct)
  ref_out, ref_grads = _value_and_grads(ref, q, k, v, ct)
  assert out.shape == q.shape and grads[1].shape == k.shape
  _assert_close(out, ref_out, TOL['fwd'])
  for g, r in zip(grads, ref_grads):
    _assert_close(g, r, TOL['grad'])
  if not causal:
    _assert_close(ref_out, _numpy_attention(q, k, v, np.asarray(seg), np.asarray(lengths)), 1e-5)
  pad = np.arange(length)[None] >= np.asarray(lengths)[:, None]
  np.testing.assert_array_equal(np.asarray(out)[pad], 0.0)
  np.testing.assert_array_equal(np.asarray(grads[1])[pad], 0.0)


def test_gqa_without_masks_matches_repeated_kv():
  q, k, v, ct = _qkv(2, 24, 6, 2, 8, seed=2)
  kernel = lambda q, k, v: flash_attention(q, k, v, block_q=8, block_k=8, interpret=True)
  repeated = lambda q, k, v: attention_reference(q, jnp.repeat(k, 3, 2), jnp.repeat(v, 3, 2))
  out, grads = _value_and_grads(kernel, q, k, v, ct)
  ref_out, ref_grads = _value_and_grads(repeated, q, k, v, ct)
  _assert_close(out, ref_out, TOL['fwd'])
  for g, r in zip(grads, ref_grads):
    _assert_close(g, r, TOL['grad'])


def test_skipping_visits_only_non_empty_blocks():
  """Visited pairs = the (q block, k block) pairs holding some allowed (query, key), counted
  by brute force; far fewer than all pairs for short examples and packed sequences."""
  length, block = 64, 8
  seg = np.zeros((3, length), np.int32)
  seg[1, 16:40], seg[1, 40:] = 1, 2             # three packed sequences, 16 / 24 / 24 tokens
  lengths = np.asarray([64, 64, 10], np.int32)  # example 2: one block and a bit
  q_seg, k_seg, real = masked_segments(jnp.asarray(seg), jnp.asarray(lengths), 3, length, length)
  pairs = masked_pairs(valid_blocks(q_seg, real, block, block, False))
  visited = np.asarray(pairs.start_q[:, -1])
  allowed = ((np.asarray(q_seg)[:, :, None] == np.asarray(k_seg)[:, None, :])
             .reshape(3, 8, block, 8, block).any(axis=(2, 4)))
  np.testing.assert_array_equal(visited, allowed.sum(axis=(1, 2)))
  np.testing.assert_array_equal(visited, [64, 2 * 2 + 3 * 3 + 3 * 3, 4])   # of 64 pairs each
  np.testing.assert_array_equal(np.asarray(pairs.start_k[:, -1]), visited)
  # Each listed pair is allowed, in query-block order, and the k-sorted list is the same set.
  for b in range(3):
    n = visited[b]
    listed = set(zip(np.asarray(pairs.q_by_q[b, :n]), np.asarray(pairs.k_by_q[b, :n])))
    assert listed == set(zip(*np.nonzero(allowed[b])))
    assert listed == set(zip(np.asarray(pairs.q_by_k[b, :n]), np.asarray(pairs.k_by_k[b, :n])))


def test_bad_gqa_and_lengths_raise():
  q, k = jnp.zeros((2, 16, 4, 8)), jnp.zeros((2, 16, 3, 8))
  with pytest.raises(ValueError, match='must divide q heads'):
    flash_attention(q, k, k, interpret=True)
  with pytest.raises(ValueError, match='lengths'):
    flash_attention(q, q, q, lengths=jnp.zeros((3,), jnp.int32), interpret=True)
