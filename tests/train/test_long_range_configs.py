"""configs/mixture_of_mamba.py and configs/maelre.py (shrunk to one or two thin blocks) on a
`data 2 x fsdp 2 x tensor 2` mesh give one device's losses, with the Mamba weights sharded on
the tensor axis like the MLP; and each trains through the CLI on that mesh and resumes from a
checkpoint to the same losses as the uninterrupted run."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax_testing import ROOT, train_steps
from run_testing import rows, run, same_losses, train_argv

SMALL = ('--config.model.width=32', '--config.model.num_heads=4', '--config.model.mlp_dim=64',
         '--config.model.embed_dim=16', '--config.model.attention_impl=xla',
         '--config.model.mamba.state=4', '--config.model.mamba.chunk=8')
CASES = {   # config, its arguments, the task trained
    'mixture_of_mamba': ('configs/mixture_of_mamba.py', ('--config.model.num_layers=1',),
                         'av_classify'),
    'maelre': ('configs/maelre.py:mamba', ('--config.model.num_layers=2',
                                           '--config.model.maelre.merge_after=(0,)'),
               'image_text'),
}
MESH = {'data': 2, 'fsdp': 2, 'tensor': 2}


def _config(name):
  path, extra, _ = CASES[name]
  # one scan direction keeps the compile small; both directions train through the CLI below
  return config_lib.load_config(str(ROOT) + '/' + path, list(SMALL + extra) + [
      '--config.model.mamba.bidirectional=False'])


@pytest.mark.parametrize('name', sorted(CASES))
def test_mesh_losses_equal_one_device_and_mamba_is_tensor_sharded(name):
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  config = _config(name)
  task = CASES[name][2]
  _, hist, state = train_steps(config, MESH, 8, 2, task_name=task)
  _, want, _ = train_steps(config, {'data': 1}, 1, 2, task_name=task)
  for got, exp in zip(hist, want):
    np.testing.assert_allclose(got['loss'], exp['loss'], rtol=1e-5, atol=1e-6)
  mixer = state['params']['encoder']['block_0']['mamba']
  lead = (None,) if name == 'mixture_of_mamba' else ()      # [modalities, ...] per modality
  for leaf, axes in ((mixer['in_proj']['kernel'], lead + ('fsdp', None, 'tensor')),
                     (mixer['out_proj']['kernel'], lead + ('tensor', 'fsdp')),
                     (mixer['forward']['A_log'], ('tensor', None))):
    spec = tuple(leaf.sharding.spec) + (None,) * (leaf.ndim - len(leaf.sharding.spec))
    assert spec == axes, (spec, axes)


TINY = '''"""A cut of {path}: one task, tiny blocks. `python -m mmjax.train --config=THIS`."""
from mmjax import config as config_lib


def get_config(arg=None):
  c = config_lib.load_config({full!r}, {overrides!r})
  with c.tasks.unlocked():
    for name in list(c.tasks):
      if name != {task!r}:
        del c.tasks[name]
  c.tasks[{task!r}].batch_size = 8
  c.evaluation.datasets = type(c.evaluation.datasets)()
  return c
'''


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CASES))
def test_trains_through_cli_on_mesh_and_resumes_exactly(name, tmp_path):
  path, extra, task = CASES[name]
  overrides = list(SMALL + extra) + [
      '--config.total_steps=4', '--config.log_every=1', '--config.checkpoint_every=2',
      '--config.optimizer.warmup_steps=1', '--config.data.threads=1',
      '--config.mesh.data=2', '--config.mesh.fsdp=2', '--config.mesh.tensor=2']
  cfg_path = tmp_path / 'cut.py'
  cfg_path.write_text(TINY.format(path=path, full=str(ROOT) + '/' + path, overrides=overrides,
                                  task=task))
  ref = tmp_path / 'ref'
  code, out = run(train_argv(str(cfg_path), ref), tmp_path / 'log')
  assert code == 0, out[-3000:]
  want = rows(ref)
  assert sorted(want) == [1, 2, 3, 4] and all(np.isfinite(r['loss']) for r in want.values())
  resumed = tmp_path / 'resumed'
  shutil.copytree(ref, resumed)
  shutil.rmtree(resumed / 'checkpoints' / '4')
  metrics = resumed / 'metrics.jsonl'
  metrics.write_text(''.join(l + '\n' for l in metrics.read_text().splitlines()
                             if json.loads(l).get('step', 0) <= 2))
  code, out = run(train_argv(str(cfg_path), resumed), tmp_path / 'log')
  assert code == 0, out[-3000:]
  assert 'resumed from checkpoint step 2' in out
  same_losses(rows(resumed), want, (3, 4))
