"""Mixture-of-Mamba: the per-token (grouped) path equals the one-modality fast path; a fused
sequence uses each token's modality's projections around one scan over the whole sequence."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mmjax.config.defaults import model_config
from mmjax.models.mixture_of_mamba import MixtureOfMambaEncoder, MomBlock


def _cfg():
  m = model_config()
  m.num_layers, m.width, m.num_heads, m.mlp_dim = 2, 16, 2, 32
  m.attention_impl, m.moe.impl = 'xla', 'xla'
  m.layer_types = ('mamba', 'attention')
  m.mamba.state, m.mamba.chunk = 4, 4
  return m


def test_fused_tokens_use_their_modality_weights_around_one_scan():
  enc = MixtureOfMambaEncoder(_cfg(), ('image', 'audio'), rngs=nnx.Rngs(0), dtype=jnp.float32)
  assert isinstance(enc.block_0, MomBlock) and not isinstance(enc.block_1, MomBlock)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 10, 16)), jnp.float32)
  mask = jnp.asarray([[1] * 8 + [0] * 2, [1] * 10], jnp.int32)
  run = nnx.jit(lambda enc, x, ids: enc(x, mask, ids)[0])
  fast = nnx.jit(lambda enc, x: enc(x, mask, 1)[0])
  ones = jnp.ones((2, 10), jnp.int32)
  np.testing.assert_allclose(np.asarray(run(enc, x, ones)), np.asarray(fast(enc, x)),
                             rtol=1e-5, atol=1e-5)
  # Fused: the first 4 tokens are modality 0. With modality 0's weights made equal to modality
  # 1's, the fused sequence equals the one-modality pass (the scan ran across both parts);
  # with its own weights, it differs, and only through those weights.
  ids = jnp.asarray([[0] * 4 + [1] * 6] * 2, jnp.int32)
  fused = run(enc, x, ids)
  _, state = nnx.split(enc)
  same = jax.tree.map(lambda a: a.at[0].set(a[1]) if a.ndim >= 1 and a.shape[0] == 2 else a,
                      state)
  twin = nnx.merge(nnx.graphdef(enc), same)
  np.testing.assert_allclose(np.asarray(run(twin, x, ids)), np.asarray(fast(twin, x)),
                             rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(fused - fast(enc, x)).max()) > 1e-3
