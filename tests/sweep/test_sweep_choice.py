"""`--sweep=FILE.py:ARG` picks one comparison of a sweep file holding several
(configs/sweeps/contrastive_variants.py); a bad ARG is one sentence."""

import os

import pytest

from mmjax import config as config_lib
from mmjax.sweep.spec import load_sweep, plan_runs
from mmjax_testing import ROOT

FILE = os.path.join(ROOT, 'configs', 'sweeps', 'contrastive_variants.py')


@pytest.mark.parametrize('arg, config, variants', [
    ('', 'm3col.py', ['nce', 'm3col']),
    (':frozen', 'meta_transformer.py', ['full_finetune', 'frozen_encoder', 'scratch']),
    (':mobileclip', 'mobileclip.py', ['no_teacher', 'student'])])
def test_each_comparison_plans_its_runs(arg, config, variants):
  sweep, config_arg = load_sweep(FILE + arg)
  assert config_arg == os.path.join(ROOT, 'configs', config)
  runs = plan_runs(sweep, config_arg, 'runs/x', 1, [('total_steps', '24')])
  assert [r.variant for r in runs] == variants
  configs = {r.variant: config_lib.load_config(r.config_arg, r.overrides) for r in runs}
  assert all(c.total_steps == 24 for c in configs.values())
  if arg == ':frozen':
    assert configs['frozen_encoder'].optimizer.freeze and not configs['scratch'].init_from
    assert not configs['full_finetune'].optimizer.freeze
  if arg == ':mobileclip':
    assert configs['no_teacher'].tasks.image_text.distill_weight == 0.0
    assert configs['student'].tasks.image_text.distill_weight == 1.0


def test_an_unknown_choice_is_one_sentence():
  with pytest.raises(config_lib.ConfigError, match="takes no argument, 'frozen' or"):
    load_sweep(FILE + ':nope')
