"""Upcycling: experts start as copies of the dense MLP, so with top-1 routing and normalised
combine weights the MoE model computes the dense model's outputs; the checkpoint resumes."""

import os

import jax
import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax.core import checkpointing
from mmjax.core import partitioning
from mmjax.core.tasks import task_signatures
from mmjax.train import optimizer as optimizer_lib
from mmjax.train import state as state_lib
from mmjax.train.state import merge
from mmjax_testing import ROOT, demo_config, synthetic_batch
from tools import upcycle

SMALL = ('--config.model.num_layers=2', '--config.model.width=32', '--config.model.num_heads=4',
         '--config.model.mlp_dim=64', '--config.model.embed_dim=16')
MOE = os.path.join(ROOT, 'configs/demo_moe.py')


def _image_text_only(config):
  """The demo's image-text task only (two modalities: a smaller model to build and compile)."""
  with config.tasks.unlocked():
    for name in [n for n in config.tasks.keys() if n != 'image_text']:
      del config.tasks[name]
  return config


def _dense_run(workdir, save=True):
  config = _image_text_only(demo_config(*SMALL))
  os.makedirs(workdir)
  config_lib.save_config(config, str(workdir))
  if not save:
    return config
  mesh = partitioning.make_mesh(config.mesh)
  graphdef, abstract, shardings = state_lib.abstract_train_state(config, mesh)
  rng = np.random.default_rng(0)         # random weights without compiling the initializers
  params = jax.tree.map(lambda a: jax.device_put(rng.normal(size=a.shape).astype(a.dtype) * 0.2,
                                                 a.sharding), abstract['params'])
  opt = optimizer_lib.make_optimizer(config.optimizer)
  state = {'step': jax.device_put(np.int32(7), shardings['step']), 'params': params,
           'opt_state': jax.jit(opt.init, out_shardings=shardings['opt_state'])(params)}
  ckpt = checkpointing.Checkpointer(str(workdir), async_save=False)
  ckpt.save(7, state, {})
  ckpt.close()
  return graphdef, state


def _outputs(graphdef, params, batch, task):
  return jax.jit(lambda p, b: merge(graphdef, p)(b, task))(params, batch)


def test_upcycled_top1_model_equals_dense(tmp_path):
  dense_dir, moe_dir = tmp_path / 'dense', tmp_path / 'moe'
  dense_graphdef, dense_state = _dense_run(dense_dir)
  flags = [*SMALL, '--config.model.moe.normalize_combine_weights=True',
           '--config.model.moe.capacity_factor=4.0']
  moe_config = _image_text_only(config_lib.load_config(MOE, flags))
  assert upcycle.upcycle(str(dense_dir), moe_config, str(moe_dir)) == 7
  argv = [f'--dense_workdir={dense_dir}', f'--config={MOE}', f'--workdir={moe_dir}', *flags]
  assert upcycle.main(argv) == 2                          # refuses to overwrite a run

  mesh = partitioning.make_mesh(moe_config.mesh)
  graphdef, abstract, _ = state_lib.abstract_train_state(moe_config, mesh)
  ckpt = checkpointing.Checkpointer(str(moe_dir), read_only=True)
  assert ckpt.all_steps() == [0]
  state, data = ckpt.restore(0, abstract)
  assert data['upcycled_from']['step'] == 7 and int(state['step']) == 0
  dense_mlp = dense_state['params']['encoder']['block_1']['mlp']
  moe_mlp = state['params']['encoder']['block_1']['mlp']
  for name in ('wi', 'wo'):
    for leaf in ('kernel', 'bias'):
      for e in range(4):
        np.testing.assert_array_equal(moe_mlp[name][leaf][e], dense_mlp[name][leaf])
  assert np.abs(np.asarray(moe_mlp['router']['kernel'])).max() > 0
  np.testing.assert_array_equal(state['params']['embed_image']['proj']['kernel'],
                                dense_state['params']['embed_image']['proj']['kernel'])
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(state['opt_state'])
             if np.ndim(x) > 0)

  task = next(t for t in task_signatures(moe_config) if t.name == 'image_text')
  batch = synthetic_batch(task, 0, batch_size=8)
  want = _outputs(dense_graphdef, dense_state['params'], batch, task)
  got = _outputs(graphdef, state['params'], batch, task)
  for m in ('image', 'text'):
    np.testing.assert_allclose(got['embeddings'][m], want['embeddings'][m], atol=2e-5, rtol=1e-4)
    assert float(got['aux'][m]['layer_1']['dropped_fraction']) == 0.0


def test_mismatched_dense_run_is_one_sentence(tmp_path):
  _dense_run(tmp_path / 'dense', save=False)
  narrow = [*SMALL[:-1], '--config.model.embed_dim=8']
  config = _image_text_only(config_lib.load_config(MOE, narrow))
  with pytest.raises(upcycle.UpcycleError, match=r"^parameter 'proj_image/bias' has shape \(16,\) "
                     r'in the dense checkpoint but \(8,\) in the MoE model: use the same sizes\.$'):
    upcycle.upcycle(str(tmp_path / 'dense'), config, str(tmp_path / 'x'))
  config = _image_text_only(config_lib.load_config(MOE, list(SMALL)))
  with pytest.raises(upcycle.UpcycleError, match='has no checkpoints: train the dense model first'):
    upcycle.upcycle(str(tmp_path / 'dense'), config, str(tmp_path / 'x'))
  assert not os.path.exists(tmp_path / 'x')
