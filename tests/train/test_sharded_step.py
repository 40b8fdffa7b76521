"""The same training run on different meshes gives the same losses; big presets really shard."""

import jax
import numpy as np
import pytest

from mmjax.core import partitioning
from mmjax.core.tasks import task_signatures
from mmjax.train import faults, state as state_lib, step as step_lib
from mmjax_testing import demo_config, synthetic_batch, train_steps

MESHES = [  # pure data parallelism on 8 devices is checked by the other mesh tests
    ({'data': 1}, 1),
    ({'data': 2, 'fsdp': 4}, 8),
    ({'data': 2, 'tensor': 4}, 8),
]


def _losses(mesh_sizes, num_devices, steps=3):
  config = demo_config('--config.optimizer.warmup_steps=1', '--config.model.num_layers=2',
                       '--config.tasks.image_text.batch_size=16')
  # One task signature (one compilation per mesh) keeps the test fast; the meshes are the point.
  _, history, state = train_steps(config, mesh_sizes, num_devices, steps)
  return np.array([float(m['loss']) for m in history]), state


def test_losses_agree_across_meshes():
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  reference, _ = _losses(*MESHES[0])
  assert np.all(np.isfinite(reference))
  for sizes, n in MESHES[1:]:
    got, _ = _losses(sizes, n)
    np.testing.assert_allclose(got, reference, rtol=1e-4, err_msg=str(sizes))


def test_base_preset_fsdp8_shards_every_matrix():
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  config = demo_config('--config.model.size=base', '--config.model.num_layers=None',
                       '--config.model.width=None', '--config.model.num_heads=None',
                       '--config.model.mlp_dim=None', '--config.mesh.data=1',
                       '--config.mesh.fsdp=8')
  assert config.model.width == 768 and config.model.num_layers == 12
  mesh = partitioning.make_mesh(config.mesh)
  _, abstract, _ = state_lib.abstract_train_state(config, mesh)
  flat, _ = jax.tree_util.tree_flatten_with_path(abstract['params'])
  matrices = [(jax.tree_util.keystr(p), a) for p, a in flat
              if a.ndim >= 2 and 'bias' not in jax.tree_util.keystr(p)]
  assert len(matrices) > 12 * 4
  for name, a in matrices:
    spec = a.sharding.spec
    used = [ax for entry in spec if entry for ax in (entry if isinstance(entry, tuple) else (entry,))]
    assert 'fsdp' in used, f'{name} {a.shape} is not sharded: {spec}'
    shard = a.sharding.shard_shape(a.shape)
    assert np.prod(shard) * 8 == np.prod(a.shape), (name, a.shape, shard)


def test_nonfinite_step_leaves_params_unchanged():
  config = demo_config('--config.model.num_layers=1')
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  graphdef, _, shardings = state_lib.abstract_train_state(config, mesh)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  before = jax.device_get(state['params'])
  train_step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  task = [t for t in task_signatures(config) if t.name == 'image_text'][0]
  batch = faults.poison_batch(synthetic_batch(task))  # uint8 pixels go as float32 with a NaN
  assert batch['image'].dtype == np.float32 and np.isnan(batch['image'][0, 0, 0, 0])
  state, metrics = train_step(state, batch, task)
  assert int(metrics['nonfinite']) == 1 and int(state['step']) == 1
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state['params']), before)
