"""MAELRE token merging: sizes are conserved, padding never merges into real tokens (nor does
its value reach them), merging off equals the plain encoder, size-weighted attention equals
attention over the unmerged duplicates, and linear attention matches its definition."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mmjax.config.defaults import model_config
from mmjax.models.encoder import Encoder
from mmjax.models.token_merging import (MaelreEncoder, bipartite_merge, linear_attention,
                                        proportional_attention)


def _cfg(**maelre):
  m = model_config()
  m.num_layers, m.width, m.num_heads, m.mlp_dim = 3, 16, 2, 32
  m.attention_impl = 'xla'
  for k, v in maelre.items():
    m.maelre[k] = v
  return m


def test_merge_conserves_sizes_and_keeps_padding_apart():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((3, 12, 4)), jnp.float32)
  mask = np.ones((3, 12), np.float32)
  mask[0, 7:] = 0
  mask[1, 3:] = 0          # mostly padding: padding merges with padding first
  sizes = jnp.asarray(mask)
  merge = jax.jit(bipartite_merge, static_argnums=(3,))
  new_x, new_s, source = merge(x, sizes, x, 5)
  assert new_x.shape == (3, 7, 4) and new_s.shape == (3, 7)
  np.testing.assert_allclose(np.asarray(new_s.sum(1)), mask.sum(1))
  # each merged token's value is the size-weighted mean of the real input tokens mapped to it
  src = np.asarray(source)
  for i in range(3):
    for j in range(7):
      members = [p for p in range(12) if src[i, p] == j and mask[i, p] > 0]
      assert len(members) == int(new_s[i, j])
      if members:
        np.testing.assert_allclose(np.asarray(new_x[i, j]),
                                   np.asarray(x[i, members]).mean(0), rtol=1e-5, atol=1e-5)
  # changing padded values changes no real merged token
  noisy = x.at[0, 7:].set(1e3).at[1, 3:].set(-1e3)
  new_x2, _, source2 = merge(noisy, sizes, x, 5)
  real = np.asarray(new_s) > 0
  np.testing.assert_array_equal(np.asarray(source2), src)
  np.testing.assert_allclose(np.asarray(new_x2)[real], np.asarray(new_x)[real], atol=1e-5)


def test_proportional_attention_equals_attention_over_duplicates():
  rng = np.random.default_rng(1)
  q = jnp.asarray(rng.standard_normal((1, 4, 2, 3)), jnp.float32)
  kv = rng.standard_normal((1, 3, 2, 3))
  counts = [1, 3, 2]                           # token j stands for counts[j] equal tokens
  dup = np.repeat(kv, counts, axis=1)
  k = jnp.asarray(kv, jnp.float32)
  sizes = jnp.asarray([counts + [0]], jnp.float32)        # a 4th, padded key
  k4 = jnp.concatenate([k, jnp.full((1, 1, 2, 3), 9.0)], 1)
  got = proportional_attention(q, k4, k4, sizes)
  logits = np.einsum('bqhd,bkhd->bhqk', np.asarray(q), dup) / np.sqrt(3)
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  want = np.einsum('bhqk,bkhd->bqhd', w, dup)
  np.testing.assert_allclose(np.asarray(got)[:, :3], want[:, :3], rtol=1e-5, atol=1e-5)
  # linear attention: phi(q).sum_j s_j phi(k_j) v_j / phi(q).sum_j s_j phi(k_j)
  phi = lambda a: np.where(a > 0, a + 1, np.exp(a))
  lin = linear_attention(q, k4, k4, sizes)
  pk = phi(dup)
  num = np.einsum('bqhd,bkhd,bkhe->bqhe', phi(np.asarray(q)), pk, dup)
  den = np.einsum('bqhd,bkhd->bqh', phi(np.asarray(q)), pk)[..., None]
  np.testing.assert_allclose(np.asarray(lin), num / den, rtol=1e-5, atol=1e-5)


def test_merging_off_equals_plain_encoder_and_on_ignores_padding():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((2, 10, 16)), jnp.float32)
  mask = jnp.asarray([[1] * 7 + [0] * 3, [1] * 10], jnp.int32)
  plain = Encoder(_cfg(), rngs=nnx.Rngs(0), dtype=jnp.float32)
  off = MaelreEncoder(_cfg(merge_after=(0,), merge_ratio=0.0), rngs=nnx.Rngs(0),
                      dtype=jnp.float32)
  want, _ = nnx.jit(plain)(x, mask)
  got, _ = nnx.jit(off)(x, mask)
  real = np.asarray(mask) > 0     # outputs at padding are nobody's: compare the real tokens
  np.testing.assert_allclose(np.asarray(got)[real], np.asarray(want)[real], rtol=1e-5, atol=1e-5)
  on = nnx.jit(MaelreEncoder(_cfg(merge_after=(0, 1), merge_ratio=0.5, linear_above=6),
                             rngs=nnx.Rngs(0), dtype=jnp.float32))
  y, _ = on(x, mask)
  assert y.shape == x.shape
  y2, _ = on(x.at[0, 7:].set(30.0), mask)
  np.testing.assert_allclose(np.asarray(y2[0, :7]), np.asarray(y[0, :7]), rtol=1e-4, atol=1e-4)
  assert float(jnp.abs(y[1] - want[1]).max()) > 1e-3     # merging does change the encoding
