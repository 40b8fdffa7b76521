"""MobileCLIP distillation in training: the step adds distill_weight x the distillation loss on
the batch's teacher embeddings (numpy reference), and configs/mobileclip.py pointed at a dataset
without teacher features exits 2 naming the reinforce command, before writing anything."""

import os

import jax
import numpy as np
import pytest

import reinforce_fixtures as F
from mmjax import config as config_lib
from mmjax.core import partitioning
from mmjax.core.tasks import task_signatures
from mmjax.train import __main__ as train_main
from mmjax.train import state as state_lib, step as step_lib
from mmjax_testing import ROOT, synthetic_batch

CONFIG = os.path.join(ROOT, 'configs/mobileclip.py')


def _np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_distill(sa, sb, ta, tb, st, tt):
  n = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  s, t = n(sa) @ n(sb).T / st, n(ta) @ n(tb).T / tt

  def kl(tm, sm):
    lt, ls = _np_log_softmax(tm), _np_log_softmax(sm)
    return (np.exp(lt) * (lt - ls)).sum(-1).mean()
  return 0.5 * (kl(t, s) + kl(t.T, s.T))


@pytest.mark.parametrize('weight', [0.0, 2.5])
def test_step_adds_weighted_distillation_on_the_teacher_embeddings(weight):
  config = config_lib.load_config(CONFIG, ['--config.model.num_layers=1',
                                           f'--config.tasks.image_text.distill_weight={weight}',
                                           '--config.tasks.image_text.batch_size=8'])
  mesh = partitioning.make_mesh({'data': 2}, devices=jax.devices()[:2])
  graphdef, _, shardings = state_lib.abstract_train_state(config, mesh)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  (task,) = task_signatures(config)
  batch = synthetic_batch(task, seed=3)
  assert batch['teacher_image'].shape == (8, 128) and batch['teacher_text'].shape == (8, 128)
  model = state_lib.merge(graphdef, jax.device_get(state['params']))
  emb = jax.device_get(model(batch, task)['embeddings'])
  temp = float(model.temperature('image', 'text'))
  expect = _np_distill(np.asarray(emb['image'], np.float64), np.asarray(emb['text'], np.float64),
                       batch['teacher_image'].astype(np.float64),
                       batch['teacher_text'].astype(np.float64), temp, 0.1)
  train_step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  _, metrics = train_step(state, batch, task)
  np.testing.assert_allclose(metrics['distill/image_text'], expect, rtol=2e-4)
  np.testing.assert_allclose(metrics['loss'], metrics['nce/image_text'] + weight * expect,
                             rtol=2e-4)


def test_mobileclip_on_a_dataset_without_teacher_features_exits_2(tmp_path, capsys):
  data = str(tmp_path / 'data')
  F.write_dataset(data)
  workdir = tmp_path / 'run'
  rc = train_main.main([f'--config={CONFIG}', f'--workdir={workdir}',
                        f'--config.data_dir={data}', f'--config.tasks.image_text.dataset={F.NAME}'])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and not workdir.exists()
  assert len(err) == 1
  assert f'python -m tools.reinforce_data --teacher=EXPORT --dataset={F.NAME}' in err[0]
