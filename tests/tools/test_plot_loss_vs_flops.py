"""tools/plot_loss_vs_flops.py: cumulative FLOPs are each task's step count times its step's
FLOPs, task losses are step-weighted means over the last rows it ran in, and "FLOPs to reach the
baseline's final loss" is read off those curves (hand-computed below); the task FLOPs are the
traced training step's (linear in the batch for a classification step)."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from mmjax import config as config_lib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tools import plot_loss_vs_flops as tool  # noqa: E402

TINY = '''from mmjax.config.defaults import base_config, task


def get_config(arg=None):
  c = base_config()
  c.model.num_layers, c.model.width, c.model.num_heads, c.model.mlp_dim = 1, 32, 2, 64
  c.model.embed_dim, c.model.patch_size, c.model.max_grid = 32, 8, 4
  c.model.max_text_length, c.model.vocab_size = 16, 512
  sizes = dict(image_size=32, text_length=8)
  c.tasks.a = task('mmjax_digits', 'image', 8, classify='image', num_classes=10, **sizes)
  c.tasks.b = task('mmjax_digits', 'image', 16, classify='image', num_classes=10, **sizes)
  return c
'''


def _row(step, a_steps, b_steps, a_loss=None, b_loss=None, a_w=1, b_w=1):
  r = {'step': step, 'task': 'a', 'tasks/a/steps': a_steps, 'tasks/b/steps': b_steps}
  if a_loss is not None:
    r.update({'tasks/a/loss': a_loss, 'tasks/a/window_steps': a_w})
  if b_loss is not None:
    r.update({'tasks/b/loss': b_loss, 'tasks/b/window_steps': b_w})
  return r


def test_task_flops_are_the_traced_step_linear_in_batch(tmp_path):
  path = tmp_path / 'tiny.py'
  path.write_text(TINY)
  flops = tool.task_step_flops(config_lib.load_config(str(path)))
  assert set(flops) == {'a', 'b'} and flops['a'] > 0
  assert flops['b'] == pytest.approx(2 * flops['a'], rel=1e-9)  # batch 16 vs 8, per-example work


def test_curves_and_flops_to_reach():
  rows = [_row(2, 1, 1, a_loss=4.0, b_loss=3.0),
          _row(4, 3, 1, a_loss=2.0, a_w=2),       # b did not run in this window
          _row(6, 3, 3, b_loss=1.0, b_w=2)]
  flops = tool.cumulative_flops(rows, {'a': 10.0, 'b': 100.0})
  np.testing.assert_allclose(flops, [110, 130, 330])
  a = tool.smoothed_task_loss(rows, 'a', smooth=2)
  np.testing.assert_allclose(a, [4.0, (4 + 2 * 2) / 3, (4 + 2 * 2) / 3])
  np.testing.assert_allclose(tool.smoothed_task_loss(rows, 'b', smooth=1), [3.0, 3.0, 1.0])
  curves = tool.loss_curves([{'step': 1, 'tasks/a/loss': 5.0}] + rows, ['a', 'b'], smooth=1)
  assert np.isnan(curves[tool.MEAN][0])  # b has not run yet
  np.testing.assert_allclose(curves[tool.MEAN][1:], [3.5, 2.5, 1.5])
  assert tool.flops_to_reach(flops, np.array([np.nan, 2.0, 1.0]), 2.0) == 130
  assert tool.flops_to_reach(flops, np.array([3.0, 2.0, 1.5]), 1.0) is None


def _fake_run(root, variant, rows):
  run = root / variant / 'seed_0'
  run.mkdir(parents=True)
  (run / 'sweep_run.json').write_text(json.dumps({'config': 'tiny.py', 'overrides': []}))
  (run / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))


def test_cli_writes_the_plot_and_the_comparison(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'tiny.py').write_text(TINY)
  monkeypatch.setattr(tool, 'task_step_flops', lambda config: {'a': 1e9, 'b': 1e9})
  base = [_row(2 * i, i, i, a_loss=3.0 - 0.5 * i, b_loss=3.0 - 0.5 * i) for i in range(1, 5)]
  fast = [_row(2 * i, i, i, a_loss=3.0 - i, b_loss=3.0 - i) for i in range(1, 5)]
  _fake_run(tmp_path / 'sweep', 'dense', base)
  _fake_run(tmp_path / 'sweep', 'mom', fast)
  out, js = tmp_path / 'p.png', tmp_path / 'p.json'
  assert tool.main(['--sweep_dir=sweep', '--variants=dense,mom', '--smooth=1', f'--out={out}',
                    f'--json={js}']) == 0
  assert out.stat().st_size > 0
  s = json.loads(js.read_text())
  dense, mom = s['variants']['dense'], s['variants']['mom']
  assert s['baseline'] == 'dense' and dense['total_flops'] == 8e9
  assert dense['final_loss']['a'] == 1.0 and mom['final_loss'][tool.MEAN] == -1.0
  # dense ends at loss 1.0 after 8 GFLOPs; mom is at 1.0 after its 2nd row (4 GFLOPs)
  assert mom['reach_baseline_final_loss']['a'] == {'flops': 4e9,
                                                   'fraction_of_baseline_total': 0.5}
  assert dense['reach_baseline_final_loss'][tool.MEAN]['fraction_of_baseline_total'] == 1.0
  assert tool.main(['--sweep_dir=sweep', '--variants=dense,nope', f'--out={out}']) == 2
