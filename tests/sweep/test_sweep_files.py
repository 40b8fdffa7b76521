"""The sweeps shipped in configs/sweeps/: each documents its command, plans valid runs, pairs its
variants by seed, and varies the seeds it names across seed indices."""

import glob
import os

import pytest

from mmjax_testing import ROOT
from mmjax import config as config_lib
from mmjax.core.tasks import tasks_from_config
from mmjax.train.agd_sampler import AgdSampler
from mmjax.models.moe.layer import check_moe_config
from mmjax.seeds import resolve_seeds
from mmjax.sweep.spec import load_sweep, plan_runs

SWEEPS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'sweeps', '*.py')))


def _plan(path, seeds=3, *overrides):
  sweep, config_arg = load_sweep(path)
  return sweep, plan_runs(sweep, config_arg, 'runs/x', seeds, list(overrides))


def test_the_five_sweeps_exist():
  assert {os.path.basename(p)[:-3] for p in SWEEPS} >= {
      'agd_vs_mixed', 'encoders', 'resolution', 'droptoken', 'routers'}


@pytest.mark.parametrize('path', SWEEPS, ids=os.path.basename)
def test_sweep_plans_valid_paired_runs(path):
  with open(path) as f:
    first = f.read().split('"""')[1].strip().splitlines()[0]
  name = os.path.relpath(path, ROOT)
  assert first.startswith(f'python -m mmjax.sweep --sweep={name} ') and '--seeds=3' in first
  sweep, runs = _plan(path)
  assert len(runs) == 3 * len(sweep.variants)
  by_seed = {}
  for run in runs:
    config = config_lib.load_config(run.config_arg, run.overrides)
    check_moe_config(config.model)
    assert tasks_from_config(config)
    by_seed.setdefault(run.seed, []).append(resolve_seeds(config))
  for seed, seeds in by_seed.items():  # every variant at a seed: the same four seeds
    assert len(set(seeds)) == 1, (seed, seeds)
  for kind in sweep.vary_seeds:  # and different ones at different seeds
    assert len({getattr(s[0], kind) for s in by_seed.values()}) == 3


def test_agd_and_mixed_see_the_same_examples_whatever_the_step_count():
  for steps in (800, 240, 24):
    _, runs = _plan(os.path.join(ROOT, 'configs/sweeps/agd_vs_mixed.py'), 1,
                    ('total_steps', str(steps)))
    agd, mixed = (config_lib.load_config(r.config_arg, r.overrides) for r in runs)
    n = len(agd.tasks)
    assert mixed.agd.mode == 'mixed' and mixed.total_steps * n == agd.total_steps
    assert mixed.optimizer.decay_steps == mixed.total_steps
    counts = [0] * n
    sampler = AgdSampler(tasks_from_config(agd), mode=agd.agd.mode)
    for s in range(agd.total_steps):
      counts[sampler.task_index(s)] += 1
    assert counts == [mixed.total_steps] * n  # each task: one batch per mixed step
    assert resolve_seeds(agd).data == resolve_seeds(mixed).data


def test_command_line_wins_over_derived_shared_settings_not_over_variants():
  _, runs = _plan(os.path.join(ROOT, 'configs/sweeps/agd_vs_mixed.py'), 1,
                  ('total_steps', '400'), ('log_every', '7'), ('agd.mode', 'weighted'))
  agd, mixed = (dict(r.overrides) for r in runs)
  assert agd['log_every'] == '7' and agd['optimizer.warmup_steps'] == str(400 // 12)
  assert mixed['agd.mode'] == 'mixed' and mixed['total_steps'] == '100'
