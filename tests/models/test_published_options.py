"""The published-model options as config keys (mmjax/models/towers.py): per-modality towers,
causal text, eot/last/map pooling, pixel mean/std, and SigLIP's sigmoid loss in training."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax import config as config_lib
from mmjax.core.tasks import tasks_from_config
from mmjax.models.model import build_model
from mmjax.train import objectives
from mmjax.train.contrastive_variants import sigmoid_loss

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(arg='', *overrides):
  path = os.path.join(ROOT, 'configs', 'siglip.py') + (f':{arg}' if arg else '')
  base = ['--config.model.num_layers=1', '--config.model.towers.text.num_layers=1']
  return config_lib.load_config(path, base + list(overrides))


def _batch(n=3, length=16, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, 500, (n, length)).astype(np.int32)
  return {'image': rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), 'text': ids,
          'text_mask': np.ones_like(ids)}


def test_sigmoid_loss_matches_a_numpy_reference():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(4, 8)), rng.normal(size=(4, 8))
  an, bn = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
  logits = an @ bn.T / 0.1 - 3.0
  labels = 2 * np.eye(4) - 1
  want = np.sum(np.log1p(np.exp(-labels * logits))) / 4
  np.testing.assert_allclose(sigmoid_loss(jnp.asarray(a), jnp.asarray(b), 0.1, -3.0), want,
                             rtol=1e-5)


class _Model:
  """What task_loss reads of the model for a contrastive pair."""
  contrast_loss = 'sigmoid'

  def __init__(self, bias):
    self.bias = bias

  def temperature(self, a, b):
    return 0.1

  def logit_bias(self, a, b):
    return self.bias


def test_siglip_config_trains_the_sigmoid_loss_and_its_bias():
  config = _config()
  model = jax.eval_shape(lambda: build_model(config, nnx.Rngs(0)))   # shapes only, no compile
  assert model.encoder_text.block_0.attn.qkv.kernel.shape == (64, 3, 2, 32)   # narrower text
  assert model.encoder_image.block_0.attn.qkv.kernel.shape[0] == config.model.width
  assert model.map_head_image.probe.shape == (1, config.model.width)
  assert model.logit_bias_image_text.shape == () and model.contrast_loss == 'sigmoid'
  task = tasks_from_config(config)[0]
  rng = np.random.default_rng(0)
  emb = {m: jnp.asarray(rng.normal(size=(4, 8)), jnp.float32) for m in ('image', 'text')}

  def loss(bias):
    out = {'embeddings': emb, 'logits': {}, 'aux': {}}
    return objectives.task_loss(_Model(bias), out, {}, task, config)

  (value, parts), grad = jax.value_and_grad(loss, has_aux=True)(jnp.float32(-10.0))
  assert 'sigmoid/image_text' in parts and 'nce/image_text' not in parts
  np.testing.assert_allclose(value, sigmoid_loss(emb['image'], emb['text'], 0.1, -10.0),
                             rtol=1e-6)
  assert float(grad) < 0   # at -10 every pair is called negative: the bias must rise


def test_causal_text_tower_ignores_what_follows_the_pooled_token():
  config = _config('clip', '--config.model.towers.text.pooling=eot')
  model = build_model(config, nnx.Rngs(0))
  a = _batch()
  a['text'][:, 5] = 511                       # the highest id: the 'eot' token
  b = {**a, 'text': a['text'].copy()}
  b['text'][:, 9:] = 7                        # what follows it changes
  embed = nnx.jit(lambda model, x: model.embed(x, 'text'))
  ea, eb = (np.asarray(embed(model, x)) for x in (a, b))
  np.testing.assert_allclose(ea, eb, atol=1e-6)
  c = {**a, 'text': a['text'].copy()}
  c['text'][:, 2] = 7                         # what precedes it counts
  assert np.abs(np.asarray(embed(model, c)) - ea).max() > 1e-4
  model.cls_image, model.ln_pre_image  # CLIP's image tower: class token and ln_pre


def test_pixel_mean_std_normalisation():
  model = build_model(_config(), nnx.Rngs(0))
  x = np.array([[[[0, 128, 255]]]], np.uint8)
  want = (x / 255.0 - 0.5) / 0.25
  np.testing.assert_allclose(model.normalize('image', jnp.asarray(x)), want, atol=1e-6)


def test_options_are_checked_command_line_keys():
  with pytest.raises(config_lib.ConfigError, match='towers.text.pooling'):
    _config('', '--config.model.towers.text.pooling=bogus')
  with pytest.raises(config_lib.ConfigError, match='contrast_loss'):
    _config('', '--config.model.contrast_loss=hinge')
  demo = config_lib.load_config(os.path.join(ROOT, 'configs', 'demo.py'),
                                ['--config.model.towers.text.width=64'])
  with pytest.raises(ValueError, match="encoder_sharing='per_modality'"):
    jax.eval_shape(lambda: build_model(demo, nnx.Rngs(0)))
