"""The AGD ablation's mixed baseline: one step sums every task's loss over one batch of each."""

import os

import jax
import numpy as np

from mmjax import config as config_lib
from mmjax.core import partitioning
from mmjax.core.tasks import MixedTask, tasks_from_config
from mmjax.train.agd_sampler import AgdSampler
from mmjax.train import state as state_lib, step as step_lib
from mmjax_testing import ROOT, synthetic_batch

ABLATION = os.path.join(ROOT, 'configs/ablation_agd.py')


def _config(arg):
  # DropToken off: a member's random token drop differs between a mixed and a single step.
  return config_lib.load_config(f'{ABLATION}:{arg}', ['--config.model.num_layers=1',
                                                      '--config.tasks.video_text.drop_token=0.0'])


def test_ablation_configs_see_the_same_examples():
  agd, mixed = _config('agd'), _config('mixed')
  n = len(tasks_from_config(agd))
  assert agd.agd.mode == 'round_robin' and mixed.agd.mode == 'mixed'
  assert mixed.total_steps * n == agd.total_steps
  sampler = AgdSampler(tasks_from_config(mixed), mode='mixed')
  (task,) = sampler.step_tasks()
  assert isinstance(task, MixedTask) and len(task.members) == n and sampler(7) == task
  counts = np.bincount([AgdSampler(tasks_from_config(agd), mode='round_robin').task_index(s)
                        for s in range(agd.total_steps)], minlength=n)
  assert np.all(counts == mixed.total_steps)


def test_mixed_step_loss_is_the_sum_of_the_task_losses():
  config = _config('mixed')
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  graphdef, _, shardings = state_lib.abstract_train_state(config, mesh)
  train_step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  (mixed,) = AgdSampler(tasks_from_config(config), mode='mixed').step_tasks()
  batches = {m.name: synthetic_batch(m, seed=i, batch_size=4) for i, m in enumerate(mixed.members)}
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  _, metrics = train_step(state, batches, mixed)
  parts = [float(metrics[f'{m.name}/loss']) for m in mixed.members]
  np.testing.assert_allclose(float(metrics['loss']), sum(parts), rtol=1e-5)
  for m in mixed.members[-1:]:  # a member's loss equals its own single-task step's loss
    state = state_lib.create_train_state(config, mesh, graphdef, shardings)
    _, single = train_step(state, batches[m.name], m)
    np.testing.assert_allclose(float(metrics[f'{m.name}/loss']), float(single['loss']),
                               rtol=1e-4)
