"""M3CoL's fusion classifier with unimodal auxiliary heads: logits and loss against numpy, the
train step on the fusion task of configs/m3col.py:fusion, and the refusals."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax.core import partitioning
from mmjax.core.tasks import task_signatures
from mmjax.models import fusion_heads
from mmjax.train import mixup, objectives, state as state_lib, step as step_lib
from mmjax_testing import ROOT, synthetic_batch


def _np_xent(logits, labels):
  z = logits - logits.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -logp[np.arange(len(labels)), labels].mean()


def _setup(fusion):
  config = config_lib.load_config(os.path.join(ROOT, 'configs/m3col.py:fusion'), [
      '--config.model.num_layers=1', f'--config.tasks.fusion_classify.fusion={fusion}',
      '--config.tasks.fusion_classify.batch_size=8'])
  mesh = partitioning.make_mesh({'data': 2}, devices=jax.devices()[:2])
  graphdef, _, shardings = state_lib.abstract_train_state(config, mesh)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  task = next(t for t in task_signatures(config) if t.name == 'fusion_classify')
  # The heads start at zero; give them random weights so the reference is not trivial.
  params = jax.device_get(state['params'])
  rng = np.random.default_rng(0)
  for name, _, _ in fusion_heads.heads(task):
    for leaf in ('kernel', 'bias'):
      params[name][leaf] = rng.normal(size=params[name][leaf].shape).astype(np.float32)
  return config, mesh, graphdef, shardings, state, task, params


@pytest.mark.parametrize('fusion', ['concat', 'mean'])
def test_fused_and_auxiliary_losses_match_numpy(fusion):
  config, _, graphdef, _, _, task, params = _setup(fusion)
  assert task.classify == ('image', 'audio') and task.aux_weight == 0.5
  batch = synthetic_batch(task, seed=2)
  model = state_lib.merge(graphdef, params)
  pooled = {m: np.asarray(model.features(batch, m), np.float64) for m in task.classify}
  fused = (np.concatenate([pooled['image'], pooled['audio']], -1) if fusion == 'concat'
           else (pooled['image'] + pooled['audio']) / 2)
  head = lambda name, x: x @ params[name]['kernel'] + params[name]['bias']  # noqa: E731
  want = {'fused': head('head_mmjax_digits_fused', fused),
          'image': head('head_mmjax_digits_image', pooled['image']),
          'audio': head('head_mmjax_digits_audio', pooled['audio'])}
  outputs = model(batch, task)
  for k, v in want.items():
    np.testing.assert_allclose(outputs['logits'][k], v, rtol=1e-4, atol=1e-4)
  xent = {k: _np_xent(v, batch['label']) for k, v in want.items()}
  loss, parts = objectives.task_loss(model, outputs, batch, task, config)
  for k, v in xent.items():
    np.testing.assert_allclose(parts[f'xent/{k}'], v, rtol=1e-4)
  np.testing.assert_allclose(loss, xent['fused'] + 0.5 * (xent['image'] + xent['audio']),
                             rtol=1e-4)
  assert float(parts['accuracy/fused']) == np.mean(want['fused'].argmax(-1) == batch['label'])


def test_train_step_learns_the_fused_task():
  config, mesh, graphdef, shardings, state, task, _ = _setup('concat')
  train_step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  batch = synthetic_batch(task, seed=0)
  losses = []
  for _ in range(4):
    state, metrics = train_step(state, batch, task)
    losses.append(float(metrics['loss']))
    np.testing.assert_allclose(metrics['loss'], metrics['xent/fused'] + 0.5 * (
        metrics['xent/image'] + metrics['xent/audio']), rtol=1e-5)
  assert losses[-1] < losses[0]
  params = jax.device_get(state['params'])
  assert params['head_mmjax_digits_fused']['kernel'].shape == (2 * 128, 10)
  assert 'head_mmjax_digits' not in params  # a fusion task has no shared unimodal head


def test_bad_fusion_tasks_are_refused_with_one_sentence():
  *_, task, _ = _setup('concat')
  with pytest.raises(ValueError, match="fusion='sum' is not one of concat, mean"):
    mixup.check_task(dataclasses.replace(task, fusion='sum'))
  with pytest.raises(ValueError, match='list two or more'):
    mixup.check_task(dataclasses.replace(task, classify=('image',)))
