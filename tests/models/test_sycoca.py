"""SyCoCa's attentive masking: the caption's most-attended patches are masked (against numpy),
and the caption task's loss adds the weighted reconstruction of exactly those patches."""

import os

import jax
import numpy as np
import pytest
from flax import nnx

from mmjax import config as config_lib
from mmjax.core.tasks import task_signatures
from mmjax.models.attentive_masking import attentive_mask, text_patch_attention
from mmjax.models.model import build_model
from mmjax.train import objectives
from mmjax_testing import ROOT, synthetic_batch


def sycoca_config(*overrides):
  return config_lib.load_config(os.path.join(ROOT, 'configs/coca.py:sycoca'),
                                ['--config.model.num_layers=1', *overrides])


@pytest.mark.parametrize('k', [0, 1, 6, 16])
def test_attentive_mask_takes_the_most_attended_patches(k):
  scores = np.random.default_rng(k).normal(size=(5, 16)).astype(np.float32)
  want = np.zeros((5, 16), np.int32)
  np.put_along_axis(want, np.argsort(-scores, axis=1)[:, :k], 1, axis=1)
  np.testing.assert_array_equal(np.asarray(attentive_mask(scores, k)), want)


def test_text_patch_attention_is_a_softmax_over_patches():
  rng = np.random.default_rng(0)
  p, t = rng.normal(size=(3, 7, 4)), rng.normal(size=(3, 4))
  sim = np.einsum('bnd,bd->bn', p, t)
  want = np.exp(sim - sim.max(1, keepdims=True))
  want /= want.sum(1, keepdims=True)
  np.testing.assert_allclose(np.asarray(text_patch_attention(p, t)), want, rtol=1e-5)


def test_caption_task_masks_what_the_caption_attends_to():
  config = sycoca_config('--config.tasks.image_caption.sycoca_weight=0.5')
  model = build_model(config, nnx.Rngs(0))
  task = task_signatures(config)[0]
  batch = synthetic_batch(task, seed=0, batch_size=6)
  outputs = model(batch, task, rng=jax.random.key(0), train=True)
  rec = jax.device_get(outputs['reconstruction']['sycoca/image'])
  # Independently: project every patch token and the caption into the common space.
  h, _, _ = model.encode_tokens('image', batch['image'])
  patches = np.asarray(model.project('image', h))                       # [b, 16, D]
  text = np.asarray(model.embed(batch, 'text'))                          # [b, D]
  sim = np.einsum('bnd,bd->bn', patches, text)
  want = np.zeros((6, 16), np.int32)
  np.put_along_axis(want, np.argsort(-sim, axis=1)[:, :8], 1, axis=1)   # mask ratio 0.5
  np.testing.assert_array_equal(rec['mask'], want)
  loss, parts = objectives.task_loss(model, outputs, batch, task, config)
  err = ((rec['pred'].astype(np.float64) - rec['target']) ** 2).mean(-1)
  mim = (err * want).sum() / want.sum()
  np.testing.assert_allclose(float(parts['sycoca/image']), mim, rtol=1e-5)
  np.testing.assert_allclose(
      float(loss), float(parts['nce/image_text']) + float(parts['caption/image']) + 0.5 * mim,
      rtol=1e-5)


def test_sycoca_needs_a_caption_task():
  with pytest.raises(config_lib.ConfigError, match='caption'):
    sycoca_config('--config.tasks.image_caption.caption=')
  with pytest.raises(config_lib.ConfigError, match='drop_token'):
    sycoca_config('--config.tasks.image_caption.drop_token=0.5')
