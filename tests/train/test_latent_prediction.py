"""Cross-modal latent prediction, the objective added in three library files (core/objectives.py,
models/latent_prediction.py, train/latent_prediction.py): its loss against a numpy reference,
its stop-gradient, its weight in the task loss, and a bad pair refused."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from mmjax.core.tasks import task_signatures
from mmjax.models.model import build_model
from mmjax.train import objectives
from mmjax_testing import demo_config, synthetic_batch


def _cos_loss(pred, target):
  pred = pred / np.linalg.norm(pred, axis=-1, keepdims=True)
  target = target / np.linalg.norm(target, axis=-1, keepdims=True)
  return np.mean(1.0 - np.sum(pred * target, axis=-1))


def test_latent_prediction_loss_weight_and_stop_gradient():
  config = demo_config('--config.model.num_layers=1',
                       '--config.tasks.image_text.predict=image-text',
                       '--config.tasks.image_text.predict_weight=0.5')
  task = next(t for t in task_signatures(config) if t.name == 'image_text')
  task = dataclasses.replace(task, batch_size=4)
  assert task.predict == (('image', 'text'),) and task.predict_weight == 0.5
  model = build_model(config, nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  batch = synthetic_batch(task, seed=2)

  def run(params, part):
    m = nnx.merge(graphdef, params)
    outputs = m(batch, task)
    loss, parts = objectives.task_loss(m, outputs, batch, task, config)
    return (parts[part] if part else loss), (loss, parts, outputs)

  (_, (loss, parts, outputs)), grads = jax.jit(
      jax.value_and_grad(run, has_aux=True), static_argnums=1)(params, 'predict/image_text')
  pred, target = (np.asarray(x) for x in outputs['predictions']['image_text'])
  assert pred.shape == target.shape == (4, config.model.embed_dim)
  np.testing.assert_allclose(target, np.asarray(outputs['embeddings']['text']))
  want = _cos_loss(pred, target)
  np.testing.assert_allclose(parts['predict/image_text'], want, rtol=1e-5)
  np.testing.assert_allclose(loss, parts['nce/image_text'] + 0.5 * want, rtol=1e-5)
  # The target is held fixed: no gradient reaches the text tower; the predictor and the image
  # side learn.
  norm = lambda tree: float(sum(np.abs(np.asarray(x)).sum() for x in jax.tree.leaves(tree)))
  assert norm(grads['proj_text']) == 0.0 and norm(grads['embed_text']) == 0.0
  assert norm(grads['predictor_image_text']) > 0 and norm(grads['proj_image']) > 0


def test_a_pair_outside_the_task_is_refused():
  config = demo_config('--config.model.num_layers=1',
                       '--config.tasks.image_text.predict=image-audio')
  with pytest.raises(ValueError, match='predict pair image-audio must name two different '
                                       'modalities of the task'):
    build_model(config, nnx.Rngs(0))
