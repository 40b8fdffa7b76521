"""A sweep variant with its own base config (`Sweep.configs`): its runs load that file, the shared
function overrides are resolved against it, and a config for an unknown variant is refused."""

import os

import pytest

from mmjax import config as config_lib
from mmjax.sweep.spec import Sweep, load_sweep, plan_runs
from mmjax_testing import ROOT


def test_generative_variants_train_their_own_configs():
  sweep, base = load_sweep(os.path.join(ROOT, 'configs/sweeps/generative.py'))
  runs = plan_runs(sweep, base, 'runs/x', 1, [('total_steps', '48')])
  args = {r.variant: os.path.relpath(r.config_arg, ROOT) for r in runs}
  assert args == {'contrastive': 'configs/demo.py', 'coca': 'configs/coca.py',
                  'sycoca': 'configs/coca.py:sycoca', 'multimae': 'configs/multimae.py'}
  for r in runs:
    c = config_lib.load_config(r.config_arg, r.overrides)
    assert c.total_steps == 48 and c.optimizer.decay_steps == 48 and c.optimizer.warmup_steps == 4
    assert c.evaluation.datasets.digits.linear_probe
  tasks = {r.variant: config_lib.load_config(r.config_arg, r.overrides).tasks for r in runs}
  assert tasks['multimae'].multimae.multimae == 'image,video,audio'
  assert tasks['sycoca'].image_caption.sycoca_weight > 0
  assert tasks['coca'].image_caption.sycoca_weight == 0


def test_config_for_an_unknown_variant_is_refused(tmp_path):
  path = tmp_path / 'bad.py'
  path.write_text('from mmjax.sweep.spec import Sweep\n'
                  "def get_sweep():\n  return Sweep(config='x.py', variants={'a': {}},\n"
                  "               configs={'b': 'y.py'}, metrics=('train/loss',))\n")
  with pytest.raises(config_lib.ConfigError, match="configs names \\['b'\\]"):
    load_sweep(str(path))
