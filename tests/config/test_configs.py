"""Every config in configs/ loads, validates, and opens its docstring with a runnable command."""

import glob
import importlib.util
import os

import pytest

from mmjax import config as config_lib
from mmjax.core.tasks import tasks_from_config
from mmjax_testing import ROOT

CONFIGS = sorted(p for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                 if not os.path.basename(p).startswith('_'))


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_loads_and_documents_a_command(path):
  spec = importlib.util.spec_from_file_location('cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  first = module.__doc__.strip().splitlines()[0]
  assert first.startswith('python -m ') and 'configs/' + os.path.basename(path) in first, first
  config = config_lib.load_config(path)
  for key in config_lib.REQUIRED_KEYS:
    assert key in config
  assert tasks_from_config(config)


def test_config_files_exist():
  names = {os.path.basename(p) for p in CONFIGS}
  assert {'demo.py', 'demo_moe.py', 'imp_base.py', 'imp_moe_base.py', 'imp_moe_large.py',
          'ablation_agd.py'} <= names


@pytest.mark.parametrize('name', ['imp_base.py', 'imp_moe_base.py', 'imp_moe_large.py'])
@pytest.mark.parametrize('chips, expected_fsdp', [(64, {'imp_moe_large.py': 4, 'imp_base.py': 8}),
                                                  (128, {'imp_moe_large.py': 8, 'imp_base.py': 8})])
def test_imp_meshes_fill_v5p_128_and_256(name, chips, expected_fsdp):
  """The README's recommended meshes: the same config fills a v5p-128 and a v5p-256."""
  from mmjax.plan import topology  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(os.path.join(ROOT, 'configs', name))
  data, fsdp, tensor, expert = topology.resolve_mesh_sizes(config.mesh, chips)
  assert data * fsdp * tensor * expert == chips
  assert fsdp == expected_fsdp.get(name, 1)
  assert expert == (16 if 'moe' in name else 1)  # one expert per device on the expert axis
  for task in tasks_from_config(config):
    assert task.batch_size % (data * fsdp * expert) == 0, task.name


@pytest.mark.parametrize('name', ['demo', 'coca', 'multimae', 'm3col', 'mobileclip', 'vatt',
                                  'imp_base', 'ablation_agd:mixed'])
def test_the_decay_follows_total_steps_unless_set(name):
  """`--config.total_steps=N` alone rescales the learning-rate decay; an explicit decay wins,
  in either order, and leaves total_steps alone."""
  cfg = config_lib.load_config(name, ['--config.total_steps=300'])
  assert cfg.optimizer.decay_steps == cfg.total_steps == 300
  for order in ((0, 1), (1, 0)):
    flags = ['--config.total_steps=300', '--config.optimizer.decay_steps=50']
    cfg = config_lib.load_config(name, [flags[i] for i in order])
    assert (cfg.total_steps, cfg.optimizer.decay_steps) == (300, 50)
