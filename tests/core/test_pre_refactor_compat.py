"""Checkpoints and params-only exports written before the house moves still restore.

Two fixtures, each made by tests/fixtures/make_pre_refactor.py against an older commit's code:
tests/fixtures/pre_refactor (commit 9532b54, before issue 13's file moves) and
tests/fixtures/pre_house (commit 18d326c, before issue 26's: the modality table, objectives as
units, the config package). Each holds a tiny MoE run's step-3 checkpoint and its orbax
params-only export, plus an independent record of every parameter (shape, sum, first value)
taken when they were written.
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

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fixtures')


@pytest.fixture(name='fixture_dir', params=['pre_refactor', 'pre_house'])
def _fixture_dir(tmp_path, request):
  shutil.copytree(os.path.join(FIXTURES, request.param), tmp_path / 'old')
  return tmp_path / 'old'


def _config(fixture_dir):
  with open(fixture_dir / 'run' / 'config.json') as f:
    return config_lib.config_from_json(f.read())


def _check_against_record(params, fixture_dir):
  with open(fixture_dir / 'params_record.json') as f:
    record = json.load(f)['params']
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
  _check_against_record(state['params'], fixture_dir)


def test_old_export_loads_plain_and_onto_abstract_params(fixture_dir):
  export = str(fixture_dir / 'export')
  params, config = load_params(export)
  _check_against_record(params, fixture_dir)
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  _, abstract, _ = state_lib.abstract_train_state(config, mesh)
  placed, _ = load_params(export, abstract['params'])
  _check_against_record(placed, fixture_dir)


def test_evaluate_restores_old_run_and_old_export_alike(fixture_dir):
  config = _config(fixture_dir)
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  step, _, from_run = restore.restore_params(config, str(fixture_dir / 'run'), mesh)
  step_e, _, from_export = restore.restore_params(config, str(fixture_dir / 'export'), mesh)
  assert step == step_e == 3
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(from_run),
               jax.device_get(from_export))
  _check_against_record(from_run, fixture_dir)
