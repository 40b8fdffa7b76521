"""A checkpoint and a params-only export written before the issue-13 file moves still restore.

The fixture (tests/fixtures/pre_refactor, made by make_pre_refactor.py at commit 9532b54) holds a
tiny MoE run's step-3 checkpoint and its orbax params-only export, plus an independent record
of every parameter (shape, sum, first value) taken when they were written.
"""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax.core import checkpointing
from mmjax.core import partitioning
from mmjax.core.exports.params_io import load_params
from mmjax.evaluate import restore
from mmjax.train import state as state_lib

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fixtures',
                       'pre_refactor')


@pytest.fixture(name='fixture_dir')
def _fixture_dir(tmp_path):
  shutil.copytree(FIXTURE, tmp_path / 'pre_refactor')
  return tmp_path / 'pre_refactor'


def _record():
  with open(os.path.join(FIXTURE, 'params_record.json')) as f:
    return json.load(f)


def _config(fixture_dir):
  with open(fixture_dir / 'run' / 'config.json') as f:
    return config_lib.config_from_json(f.read())


def _check_against_record(params):
  record = _record()['params']
  flat, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(params))
  got = {'/'.join(str(getattr(k, 'key', k)) for k in p): np.asarray(v) for p, v in flat}
  assert sorted(got) == sorted(record)
  for name, (shape, total, first) in record.items():
    assert list(got[name].shape) == shape, name
    np.testing.assert_allclose(np.sum(got[name], dtype=np.float64), total, rtol=1e-6, atol=1e-6)
    assert float(got[name].reshape(-1)[0]) == first, name


def test_old_checkpoint_restores_on_new_mesh(fixture_dir):
  assert jax.device_count() >= 2, 'tests/conftest.py sets 8 CPU devices'
  config = _config(fixture_dir)
  mesh = partitioning.make_mesh({'data': 1, 'fsdp': 2}, devices=jax.devices()[:2])
  _, abstract, _ = state_lib.abstract_train_state(config, mesh)
  ckpt = checkpointing.Checkpointer(str(fixture_dir / 'run'), read_only=True, async_save=False)
  try:
    state, data = ckpt.restore(3, abstract)
  finally:
    ckpt.close()
  assert data['agd_step'] == 3 and int(state['step']) == 3
  _check_against_record(state['params'])


def test_old_export_loads_plain_and_onto_abstract_params(fixture_dir):
  export = str(fixture_dir / 'export')
  params, config = load_params(export)
  _check_against_record(params)
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  _, abstract, _ = state_lib.abstract_train_state(config, mesh)
  placed, _ = load_params(export, abstract['params'])
  _check_against_record(placed)


def test_evaluate_restores_old_run_and_old_export_alike(fixture_dir):
  config = _config(fixture_dir)
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  step, _, from_run = restore.restore_params(config, str(fixture_dir / 'run'), mesh)
  step_e, _, from_export = restore.restore_params(config, str(fixture_dir / 'export'), mesh)
  assert step == step_e == 3
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(from_run),
               jax.device_get(from_export))
  _check_against_record(from_run)
