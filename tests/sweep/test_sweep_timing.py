"""The sweep's timing pass measures a variant apart: `tools.bench_step --config=...` times the
step the training loop dispatches for that config (one mixed step under `agd.mode=mixed`, each
task's step otherwise), weighted by how often the sampler draws it; `bench_pass` gives each
variant's seconds per step over rounds and Welch's difference from the baseline."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mmjax.sweep import command as runner
from mmjax.sweep.spec import Run

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tools import bench_step  # noqa: E402

TINY = '''from mmjax.config.defaults import base_config, task


def get_config(arg=None):
  c = base_config()
  c.model.num_layers = 1
  c.model.embed_dim = 32
  c.model.patch_size = 8
  c.model.max_grid = 4
  c.model.max_text_length = 16
  c.model.vocab_size = 512
  sizes = dict(image_size=32, text_length=8)
  c.tasks.image_text = task('mmjax_digits', 'image,text', 8, contrast='image-text', **sizes)
  c.tasks.image_classify = task('mmjax_digits', 'image', 8, classify='image', num_classes=10,
                                **sizes)
  c.agd.mode = 'mixed'
  return c
'''


def test_bench_config_times_the_mixed_step_the_loop_dispatches(tmp_path):
  path = tmp_path / 'tiny.py'
  path.write_text(TINY)
  out = tmp_path / 'bench.json'
  assert bench_step.main([f'--config={path}', '--steps=1', f'--out={out}',
                          '--config.model.num_heads=2']) == 0  # what the timing pass runs
  r = json.loads(out.read_text())
  assert r['overrides'] == [['model.num_heads', '2']] and r['steps'] == 1
  (name, task), = r['tasks'].items()  # one step kind: every task's batch summed
  assert name.startswith('mixed@') and task['share'] == 1.0
  assert r['step_s'] == pytest.approx(task['step_s']) and r['step_s'] > 0


def test_bench_pass_reads_each_round_and_compares_with_welch(tmp_path, monkeypatch):
  runs = [Run(v, 0, str(tmp_path / v / 'seed_0'), 'c.py', (), 8) for v in ('a', 'b')]
  measured = {('a', 0): 0.10, ('a', 1): 0.12, ('a', 2): 0.11,
              ('b', 0): 0.07, ('b', 1): 0.06, ('b', 2): 0.08}
  started = []

  def fake_run(argv, **kw):  # writes what a bench_step process would, in the order asked
    out = next(a for a in argv if a.startswith('--out='))[len('--out='):]
    v, rep = os.path.basename(out).split('.')[:2]
    started.append((v, int(rep)))
    with open(out, 'w') as f:
      json.dump({'step_s': measured[(v, int(rep))]}, f)
    return type('P', (), {'returncode': 0})()
  monkeypatch.setattr(runner.subprocess, 'run', fake_run)
  t = runner.bench_pass(runs, 'a', str(tmp_path), repeats=3, steps=2)
  assert sorted(started) == sorted(measured) and [r for _, r in started] == [0, 0, 1, 1, 2, 2]
  b = [measured[('b', k)] for k in range(3)]
  a = [measured[('a', k)] for k in range(3)]
  assert t['variants']['b']['step_s']['mean'] == pytest.approx(np.mean(b))
  ci = scipy_stats.ttest_ind(b, a, equal_var=False).confidence_interval()
  assert t['variants']['b']['welch']['ci95'] == pytest.approx([ci.low, ci.high])
  started.clear()
  runner.bench_pass(runs, 'a', str(tmp_path), repeats=3, steps=2)  # kept: nothing re-measured
  assert started == []
