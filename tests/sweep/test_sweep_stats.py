"""Sweep statistics against numpy/scipy-free expectations, and the summary built from records."""

import math

import numpy as np
import pytest

from mmjax.sweep import stats, summary as summary_lib

# Two-sided 95% Student t quantiles t(0.975, df), from printed tables.
T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764}


@pytest.mark.parametrize('values', [[0.5, 0.7], [1.0, 2.0, 4.0], [0.1, 0.2, 0.25, 0.4, 0.3]])
def test_describe_matches_numpy_and_t_table(values):
  d = stats.describe(values)
  x = np.asarray(values)
  n = len(x)
  assert d['n'] == n
  assert d['mean'] == pytest.approx(x.mean())
  sd = math.sqrt(((x - x.mean()) ** 2).sum() / (n - 1))  # ddof=1 by hand
  assert d['std'] == pytest.approx(sd)
  half = T975[n - 1] * sd / math.sqrt(n)
  assert d['ci95'] == pytest.approx([x.mean() - half, x.mean() + half], rel=1e-4)


def test_one_value_has_no_spread_and_none_is_skipped():
  assert stats.describe([3.0]) == {'mean': 3.0, 'std': None, 'ci95': None, 'n': 1}
  assert stats.describe([]) == {'mean': None, 'std': None, 'ci95': None, 'n': 0}
  assert stats.describe([1.0, None, float('nan'), 3.0])['n'] == 2


def test_paired_difference_pairs_by_seed():
  base = {0: 1.0, 1: 2.0, 2: 3.0}
  var = {0: 1.5, 1: 2.1, 3: 9.0}  # seed 3 has no baseline, seed 2 no variant: left out
  d = stats.paired_difference(var, base)
  assert d['seeds'] == [0, 1] and d['n'] == 2
  diffs = np.array([0.5, 0.1])
  assert d['mean'] == pytest.approx(diffs.mean())
  assert d['std'] == pytest.approx(diffs.std(ddof=1))
  half = T975[1] * diffs.std(ddof=1) / math.sqrt(2)
  assert d['ci95'] == pytest.approx([diffs.mean() - half, diffs.mean() + half], rel=1e-4)


def test_build_summary_layout_and_markdown():
  records = [{'variant': v, 'seed': s, 'metrics': {'acc': a, 'loss': l}}
             for v, s, a, l in [('a', 0, 0.5, 2.0), ('a', 1, 0.6, 1.8), ('b', 0, 0.7, 2.2),
                                ('b', 1, 0.9, 2.1)]]
  s = summary_lib.build_summary(records, ['a', 'b'], ['acc', 'loss'], 'a')
  assert s['seeds'] == [0, 1] and s['baseline'] == 'a'
  assert s['variants']['b']['metrics']['acc']['mean'] == pytest.approx(0.8)
  assert s['variants']['b']['per_seed']['loss'] == {'0': 2.2, '1': 2.1}
  diff = s['variants']['b']['difference_from_baseline']['acc']
  assert diff['mean'] == pytest.approx(0.25) and diff['std'] == pytest.approx(
      np.std([0.2, 0.3], ddof=1))
  assert 'difference_from_baseline' not in s['variants']['a']
  md = summary_lib.format_markdown(s, 'demo', ['acc', 'loss'])
  assert '| b | +0.25 [' in md and 'Paired difference from `a`' in md
