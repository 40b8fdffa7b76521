"""Issue 34's numerics and conventions: cross-attention scores in float32 under a bfloat16
model (CoCa decoder, attention pooler, masked decoders share `CrossAttention`), the MoE
auxiliary loss averaged over MoE layers, and the caption's end target written explicitly."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mmjax.models.text_decoder import CrossAttention
from mmjax.train.generative_objectives import END_ID, caption_targets
from mmjax.train.objectives import moe_aux_loss


def test_cross_attention_scores_are_float32_under_bfloat16():
  """Two scores 0.18 apart at |s| ~ 83 (the issue's size): bf16 scores (steps of 0.5 there)
  round them 0.5 apart and move the second key's weight from 0.544 to 0.622."""
  attn = CrossAttention(32, 1, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
  eye = jnp.eye(32, dtype=jnp.float32)
  for dense in (attn.q, attn.out):
    dense.kernel[...] = eye.reshape(dense.kernel.shape)
  attn.kv.kernel[...] = jnp.stack([eye, eye], 1).reshape(attn.kv.kernel.shape)
  q = np.zeros((1, 1, 32), np.float32)
  q[..., :2] = 16.0
  ctx = np.zeros((1, 2, 32), np.float32)
  ctx[0, 0, :2] = [14.75, 14.625]   # s = 16 * 29.375 / sqrt(32) = 83.08
  ctx[0, 1, :2] = [14.75, 14.6875]  # s = 16 * 29.4375 / sqrt(32) = 83.26
  ctx[0, 1, 2] = 1.0                # a value the output weighs: w1 * 1
  allowed = jnp.ones((1, 1, 2), bool)
  fn = lambda a, c: attn(a, c, allowed)
  out = jax.jit(fn)(jnp.asarray(q, jnp.bfloat16), jnp.asarray(ctx, jnp.bfloat16))
  s = 16.0 * np.array([29.375, 29.4375]) / np.sqrt(32)
  w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
  np.testing.assert_allclose(float(out[0, 0, 2]), w[1], atol=0.02)
  jaxpr = jax.make_jaxpr(fn)(jnp.asarray(q, jnp.bfloat16), jnp.asarray(ctx, jnp.bfloat16))
  scores = [e for e in jaxpr.eqns if e.primitive.name == 'dot_general'
            and e.outvars[0].aval.shape == (1, 1, 1, 2)]
  assert scores and all(e.outvars[0].aval.dtype == jnp.float32 for e in scores)


def _config(lb=0.01, z=0.001):
  return ml_collections.ConfigDict(dict(model=dict(moe=dict(load_balancing_weight=lb,
                                                             z_loss_weight=z))))


def test_moe_aux_loss_is_the_mean_over_moe_layers():
  layer = lambda lb, z: {'load_balancing_loss': jnp.float32(lb), 'router_z_loss': jnp.float32(z)}
  one = {'image': {'layer_1': layer(1.0, 2.0), 'layer_3': layer(3.0, 4.0)}}
  two = {'image': {'layer_1': layer(1.0, 2.0), 'layer_3': layer(3.0, 4.0)},
         'text': {'layer_1': layer(1.0, 2.0), 'layer_3': layer(3.0, 4.0)}}
  for aux in (one, two):   # a two-modality task pays what a one-modality task pays
    total, parts = moe_aux_loss(aux, _config())
    np.testing.assert_allclose(parts['moe_load_balancing_loss'], 2.0)
    np.testing.assert_allclose(parts['moe_router_z_loss'], 3.0)
    np.testing.assert_allclose(total, 0.01 * 2.0 + 0.001 * 3.0, rtol=1e-6)
  total, _ = moe_aux_loss({'image': {}, 'text': {}}, _config())   # dense: no MoE layer
  assert float(total) == 0.0


def test_caption_end_target_is_written_not_read():
  text = jnp.asarray([[5, 6, 7, 9, 9], [8, 9, 10, 11, 12]])   # 9s: whatever sits in padding
  mask = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
  targets, scored = caption_targets(text, mask)
  np.testing.assert_array_equal(targets, [[5, 6, 7, END_ID, 9], [8, 9, 10, 11, 12]])
  np.testing.assert_array_equal(scored, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
