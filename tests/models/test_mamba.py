"""Mamba blocks in the encoder: padding is ignored in both scan directions, the bidirectional
mixer equals forward + reversed scans of a hand-written recurrence, layer_types mix Mamba and
attention (scanned runs equal unrolled ones), and the config rejects an unknown layer type."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from mmjax.config.defaults import model_config
from mmjax.models.encoder import Encoder
from mmjax.models.mamba import MambaMixer, causal_conv, layer_kinds


def _cfg(**kw):
  m = model_config()
  m.num_layers, m.width, m.num_heads, m.mlp_dim = 3, 16, 2, 32
  m.attention_impl = 'xla'
  m.mamba.state, m.mamba.chunk = 4, 4
  for k, v in kw.items():
    m[k] = v
  return m


def test_bidirectional_mixer_ignores_padding_and_matches_unpadded():
  cfg = _cfg()
  mixer = nnx.jit(MambaMixer(cfg, rngs=nnx.Rngs(0), dtype=jnp.float32))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 9, 16)), jnp.float32)
  mask = jnp.asarray([[1] * 6 + [0] * 3, [1] * 9], jnp.int32)
  y = mixer(x, mask)
  noisy = x.at[0, 6:].set(100.0 * rng.standard_normal((3, 16)))
  y2 = mixer(noisy, mask)
  np.testing.assert_allclose(np.asarray(y2[0, :6]), np.asarray(y[0, :6]), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(y2[1]), np.asarray(y[1]))
  # the real prefix is encoded as if the padding were not there at all
  alone = mixer(x[:1, :6], mask[:1, :6])
  np.testing.assert_allclose(np.asarray(alone[0]), np.asarray(y[0, :6]), rtol=1e-5, atol=1e-5)
  # and the backward direction does reach earlier tokens: changing the last real token moves
  # the first token's output (a causal-only mixer would not)
  moved = mixer(x.at[0, 5].add(1.0), mask)
  assert float(jnp.abs(moved[0, 0] - y[0, 0]).max()) > 1e-6


def test_causal_conv_matches_numpy():
  rng = np.random.default_rng(1)
  x, k, b = rng.standard_normal((1, 7, 3)), rng.standard_normal((4, 3)), rng.standard_normal(3)
  want = np.zeros_like(x)
  for t in range(7):
    want[0, t] = b + sum(k[j] * x[0, t - 3 + j] for j in range(4) if t - 3 + j >= 0)
  got = causal_conv(jnp.asarray(x), jnp.asarray(k), jnp.asarray(b))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)


def test_layer_types_mix_blocks_and_scan_equals_unrolled():
  cfg = _cfg(num_layers=4, layer_types=('mamba', 'mamba', 'attention'))
  assert layer_kinds(cfg) == ('mamba', 'mamba', 'attention', 'mamba')
  enc = Encoder(cfg, rngs=nnx.Rngs(0), dtype=jnp.float32)
  assert hasattr(enc.block_0, 'mamba') and not hasattr(enc.block_0, 'attn')
  assert hasattr(enc.block_2, 'attn') and not hasattr(enc.block_2, 'mamba')
  scan_cfg = _cfg(num_layers=4, layer_types=('mamba', 'mamba', 'attention'), scan_layers=True)
  scanned = Encoder(scan_cfg, rngs=nnx.Rngs(0), dtype=jnp.float32)
  assert scanned.runs == ((0, 1), (2,), (3,))
  enc, scanned = nnx.jit(enc), nnx.jit(scanned)
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((2, 8, 16)), jnp.float32)
  mask = jnp.asarray([[1] * 5 + [0] * 3, [1] * 8], jnp.int32)
  y, _ = enc(x, mask)
  ys, _ = scanned(x, mask)
  np.testing.assert_allclose(np.asarray(ys), np.asarray(y), rtol=1e-5, atol=1e-5)
  y_noisy, _ = enc(x.at[0, 5:].set(50.0), mask)    # attention and Mamba both ignore padding
  np.testing.assert_allclose(np.asarray(y_noisy[0, :5]), np.asarray(y[0, :5]), rtol=1e-4,
                             atol=1e-4)


def test_unknown_layer_type_is_one_clear_error():
  with pytest.raises(ValueError, match="layer_types has \\['ssm'\\]"):
    layer_kinds(_cfg(layer_types=('ssm',)))


def test_model_flops_of_a_mixer_count_matmuls_and_the_scan():
  from mmjax.plan import flop_count  # pylint: disable=g-import-not-at-top
  cfg = _cfg()
  mixer = MambaMixer(cfg, rngs=nnx.Rngs(0), dtype=jnp.float32)
  graphdef, state = nnx.split(mixer)
  b, l, w, e, n, r = 2, 8, 16, 32, 4, 1          # width 16: expand 2, dt rank ceil(16/16)
  x, mask = jnp.ones((b, l, w)), jnp.ones((b, l), jnp.int32)
  fn = lambda state, x: nnx.merge(graphdef, state)(x, mask)
  got = flop_count.count_model_flops(lambda: jax.jit(fn).trace(state, x)).flops
  per_direction = 2 * b * l * e * (r + 2 * n) + 2 * b * l * r * e + 9 * b * l * e * n
  want = 2 * b * l * w * 2 * e + 2 * per_direction + 2 * b * l * e * w
  assert got == want
