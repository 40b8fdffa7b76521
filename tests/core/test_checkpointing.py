"""Checkpoints restore onto other meshes bit-exactly and refuse mismatched models."""

import jax
import numpy as np
import pytest

from mmjax.core import checkpointing
from mmjax.core import partitioning
from mmjax.train import state as state_lib
from mmjax_testing import demo_config


def _abstract(config, sizes, n):
  mesh = partitioning.make_mesh(sizes, devices=jax.devices()[:n])
  return state_lib.abstract_train_state(config, mesh), mesh


def test_save_on_data8_restore_on_fsdp4_and_one_device(tmp_path):
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  config = demo_config('--config.model.num_layers=2')
  (graphdef, _, shardings), mesh = _abstract(config, {'data': 8}, 8)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(3, state, {'agd_step': 3})
  ckpt.wait()
  expected = jax.device_get(state['params'])
  for sizes, n in (({'data': 2, 'fsdp': 4}, 8), ({'data': 1}, 1)):
    (_, abstract, _), _ = _abstract(config, sizes, n)
    restored, data = checkpointing.Checkpointer(str(tmp_path)).restore(3, abstract)
    assert data == {'agd_step': 3}
    got = jax.device_get(restored['params'])
    jax.tree.map(np.testing.assert_array_equal, got, expected)
    leaf = restored['params']['encoder']['block_0']['mlp']['wi']['kernel']
    assert leaf.sharding == abstract['params']['encoder']['block_0']['mlp']['wi']['kernel'].sharding


def test_mismatch_names_first_differing_parameter(tmp_path):
  config = demo_config('--config.model.num_layers=1')
  (graphdef, _, shardings), mesh = _abstract(config, {'data': 1}, 1)
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(1, state_lib.create_train_state(config, mesh, graphdef, shardings), {})
  ckpt.wait()
  other = demo_config('--config.model.num_layers=1', '--config.model.mlp_dim=64')
  (_, abstract, _), _ = _abstract(other, {'data': 1}, 1)
  with pytest.raises(checkpointing.CheckpointMismatchError,
                     match=r"'params/encoder/block_0/mlp/wi/bias' has shape \(512,\)"):
    ckpt.restore(1, abstract)
  deeper = demo_config('--config.model.num_layers=2')
  (_, abstract, _), _ = _abstract(deeper, {'data': 1}, 1)
  with pytest.raises(checkpointing.CheckpointMismatchError, match='block_1'):
    ckpt.restore(1, abstract)


def test_writer_removes_partial_saves_a_killed_run_left(tmp_path):
  config = demo_config('--config.model.num_layers=1')
  (graphdef, _, shardings), mesh = _abstract(config, {'data': 1}, 1)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  ckpt = checkpointing.Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(1, state, {'agd_step': 1})
  ckpt.close()
  partial = tmp_path / 'checkpoints' / '5.orbax-checkpoint-tmp-1234'  # as a SIGKILL leaves it
  (partial / 'state').mkdir(parents=True)
  reader = checkpointing.Checkpointer(str(tmp_path), read_only=True, async_save=False)
  assert partial.exists() and reader.all_steps() == [1]  # readers touch nothing
  writer = checkpointing.Checkpointer(str(tmp_path), async_save=False)
  writer.save(2, state, {'agd_step': 2})  # orbax finishes its background clean-up before a save
  writer.close()
  assert not partial.exists() and writer.all_steps() == [1, 2]
