"""Runs that start from an imported published model (configs/published.py): LiT trains through
the CLI with the imported image tower bit-identical afterwards and the text tower from
scratch; tools.upcycle turns an imported CLIP into a top-1 MoE that computes what it did."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax import config as config_lib
from mmjax.core import checkpointing, partitioning
from mmjax.core.exports import param_names
from mmjax.core.exports.params_io import load_params
from mmjax.models.model import build_model
from mmjax.train import __main__ as train_main
from mmjax.train import state as state_lib
from mmjax_testing import ROOT
from tools import upcycle

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TESTS, 'export'))
import interop_fixtures as ifx  # noqa: E402

CONFIG = os.path.join(ROOT, 'configs', 'published.py')


def _restore(config, workdir):
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  abstract = state_lib.abstract_train_state(config, mesh)[1]
  step, state, _ = checkpointing.Checkpointer(workdir, read_only=True).restore_latest_good(abstract)
  return step, param_names.flatten(jax.tree.map(np.asarray, nnx.to_pure_dict(state['params'])
                                                if hasattr(state['params'], 'to_pure_dict')
                                                else state['params']))


@pytest.mark.slow
def test_lit_from_an_imported_tower_through_the_cli(tmp_path, capsys):
  export = ifx.import_to('open_clip', str(tmp_path / 'imported'))
  run = str(tmp_path / 'lit')
  argv = [f'--config={CONFIG}:lit:{export}', f'--workdir={run}', '--config.total_steps=2',
          '--config.log_every=2', '--config.checkpoint_every=2', '--config.data.threads=1',
          '--config.optimizer.warmup_steps=1', '--config.tasks.image_text.batch_size=8',
          '--config.optimizer.learning_rate=0.01']
  assert train_main.main(argv) == 0, capsys.readouterr().err[-2000:]
  config = config_lib.load_run_config(run)
  step, after = _restore(config, run)
  before = param_names.flatten(load_params(export)[0])
  image = [n for n in after if n.split('.')[0] in ('embed_image', 'cls_image', 'ln_pre_image',
                                                     'encoder_image', 'proj_image')]
  assert step == 2 and len(image) > 20
  for n in image:
    assert np.asarray(after[n]).tobytes() == np.asarray(before[n]).tobytes(), n
  # the text tower is new (digits' 512-word vocabulary) and it trained
  assert after['embed_text.token_embedding'].shape[0] == 512
  assert before['embed_text.token_embedding'].shape[0] == 300


def test_upcycle_an_imported_clip_into_a_moe(tmp_path):
  """Every expert starts as the imported MLP (with its QuickGELU), everything else is copied;
  with top-1, normalised weights and room for every token that computes the dense function
  (tests/models/moe/test_upcycle.py checks that equality on the demo model)."""
  export = ifx.import_to('open_clip', str(tmp_path / 'imported'))
  config = config_lib.load_config(f'{CONFIG}:moe:{export}')
  run = str(tmp_path / 'moe')
  assert upcycle.upcycle(export, config, run) == 0
  step, params = _restore(config, run)
  dense = param_names.flatten(load_params(export)[0])
  assert step == 0
  for tower in ('encoder_image', 'encoder_text'):
    for leaf in ('wi.kernel', 'wi.bias', 'wo.kernel', 'wo.bias'):
      experts, src = params[f'{tower}.block_1.mlp.{leaf}'], dense[f'{tower}.block_1.mlp.{leaf}']
      assert experts.shape == (4,) + src.shape
      for e in range(4):
        assert np.asarray(experts[e]).tobytes() == src.tobytes()
  tiled = {f'{t}.block_1.mlp.{leaf}' for t in ('encoder_image', 'encoder_text')
           for leaf in ('wi.kernel', 'wi.bias', 'wo.kernel', 'wo.bias')}
  for n in sorted(set(dense) - tiled):
    assert np.asarray(params[n]).tobytes() == dense[n].tobytes(), n
  assert {n for n in params if n not in dense} == {
      'encoder_image.block_1.mlp.router.kernel', 'encoder_text.block_1.mlp.router.kernel'}
  model = jax.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
  np.testing.assert_allclose(model.encoder_image.block_1.mlp.act(jnp.float32(1.0)),
                             1.0 / (1.0 + np.exp(-1.702)), rtol=1e-6)   # QuickGELU(1)
