"""`python -m tools.bench_moe --mesh`: one row per expert count on an expert axis that divides it,
with each layer's step time and per-device peak memory; bad input exits 2."""

import json

import jax
import pytest

from tools import bench_moe


def test_mesh_bench_rows(tmp_path, capsys):
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  out = tmp_path / 'b.json'
  assert bench_moe.main(['--mesh', '--experts_list=4,16', '--tokens=128', '--width=16',
                         '--mlp_dim=32', '--top_k=2', '--reps=1', f'--out={out}']) == 0
  rows = json.loads(out.read_text())['rows']
  assert [(r['experts'], r['expert_axis']) for r in rows] == [(4, 4), (16, 8)]
  for r in rows:
    for kind in ('dropless', 'tokens_choose', 'dense'):
      assert r[kind]['step_s'] > 0 and r[kind]['peak_bytes'] > 0
  # Expert weights are split over the expert axis: 4x the experts on twice the axis -> the
  # dropless layer's per-device memory grows by less than the 4x of its parameters.
  assert rows[1]['dropless']['peak_bytes'] < 4 * rows[0]['dropless']['peak_bytes']
  assert 'experts' in capsys.readouterr().out


def test_mesh_bench_bad_input_exits_2(capsys):
  assert bench_moe.main(['--mesh', '--experts_list=1,4', '--top_k=2']) == 2
  assert '--experts_list needs every count >= --top_k=2' in capsys.readouterr().err
