"""configs/meta_transformer.py:all cut to one tiny layer: one train step over all five
modality-text tasks at once (the AGD ablation's mixed step: one compile), every new modality's
embedding receives gradient; the export signature takes the new inputs, and the exported
point-cloud function (symbolic batch) matches the model."""

import os

import jax
import numpy as np
import pytest
from flax import nnx

from mmjax import config as config_lib
from mmjax.core import partitioning
from mmjax.core.tasks import MixedTask, task_signatures
from mmjax.export import inputs as inputs_lib, signature, stablehlo
from mmjax.train import state as state_lib, step as step_lib
from mmjax_testing import ROOT, synthetic_batch

NEW = ('point_cloud', 'time_series')


@pytest.fixture(scope='module')
def tiny():
  overrides = ['--config.model.num_layers=1', '--config.model.width=32',
               '--config.model.num_heads=2', '--config.model.mlp_dim=64',
               '--config.model.embed_dim=16', '--config.model.point_cloud.groups=8',
               '--config.model.point_cloud.hidden=16', '--config.optimizer.warmup_steps=0']
  config = config_lib.load_config(os.path.join(ROOT, 'configs/meta_transformer.py:all'),
                                  overrides)
  for name in config.tasks:
    config.tasks[name].batch_size = 2
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  graphdef, _, shardings = state_lib.abstract_train_state(config, mesh)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  return config, mesh, graphdef, shardings, state


def test_one_step_over_all_five_modalities(tiny):
  config, mesh, graphdef, shardings, state = tiny
  tasks = task_signatures(config)
  assert sorted(m for t in tasks for m in t.modalities if m != 'text') == sorted(
      ['image', 'video', 'audio', 'point_cloud', 'time_series'])
  mixed = MixedTask(tuple(tasks))
  batch = {t.name: synthetic_batch(t, seed=i) for i, t in enumerate(tasks)}
  before = jax.device_get(state['params'])
  step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  new_state, metrics = step(state, batch, mixed)
  metrics = jax.device_get(metrics)
  assert np.isfinite(metrics['loss']) and metrics['nonfinite'] == 0
  for t in tasks:
    assert np.isfinite(metrics[f'{t.name}/loss'])
  after = jax.device_get(new_state['params'])
  for m in NEW:   # gradient reached each new embedding and projection
    for part in (f'embed_{m}', f'proj_{m}'):
      moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), before[part], after[part])
      assert max(jax.tree.leaves(moved)) > 0, part


def test_export_signature_and_functions_take_the_new_inputs(tiny):
  config, _, graphdef, _, state = tiny
  params = jax.device_get(state['params'])
  sizes = inputs_lib.input_sizes(config, NEW + ('text',))
  assert sizes == {'num_points': 64, 'series_length': 64, 'series_channels': 3,
                   'text_length': 16}
  sig = signature.build(config, NEW, sizes, 0, 'float32', ('cpu',), None)
  names = {m: [(i['name'], i['shape'], i['dtype']) for i in sig['functions'][m]['inputs']]
           for m in NEW}
  assert names == {
      'point_cloud': [('point_cloud', ['b', 64, 3], 'float32'),
                      ('point_cloud_mask', ['b', 64], 'int32')],
      'time_series': [('time_series', ['b', 64, 3], 'float32'),
                      ('time_series_mask', ['b', 64], 'int32')]}
  assert sig['functions']['point_cloud']['preprocessing']['points'] == 64
  model = nnx.merge(graphdef, params)
  for m in ('point_cloud',):   # its sampling (scan, top_k) under a symbolic batch dimension
    exported = stablehlo.export_modality(graphdef, params, m, sizes, ('cpu',))
    batch = inputs_lib.synthetic_inputs(m, sizes, 3, 512)
    got = np.asarray(exported.call(*batch.values()))
    np.testing.assert_allclose(got, np.asarray(model.embed(batch, m)), rtol=1e-4, atol=1e-5)
    assert got.shape == (3, 16)
