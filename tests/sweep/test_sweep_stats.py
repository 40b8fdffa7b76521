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


# --- the statistics a question needs: against scipy, hand-computed values and simulation -----

from scipy import stats as scipy_stats  # noqa: E402

A = [0.61, 0.58, 0.66, 0.70, 0.59]
B = [0.55, 0.57, 0.52, 0.60]


def test_welch_equals_scipy_ttest_ind_unequal_var():
  got = stats.welch(A, B)
  ref = scipy_stats.ttest_ind(A, B, equal_var=False)
  ci = ref.confidence_interval()
  assert got['ci95'] == pytest.approx([ci.low, ci.high], rel=1e-12)
  assert got['p'] == pytest.approx(ref.pvalue, rel=1e-10)
  assert got['df'] == pytest.approx(ref.df, rel=1e-12)
  assert stats.welch([1.0], B) is None and stats.welch([1.0, 1.0], [2.0, 2.0]) is None


def test_paired_p_equals_scipy_ttest_rel():
  base = dict(enumerate(B))
  var = dict(enumerate(A[:4]))
  got = stats.paired_test(var, base)
  assert got['p'] == pytest.approx(scipy_stats.ttest_rel(A[:4], B).pvalue, rel=1e-10)


def test_holm_matches_hand_computation():
  # m = 4 sorted p: .01 .02 .03 .5 -> 4*.01=.04, 3*.02=.06, 2*.03=.06, 1*.5=.5 (monotone)
  assert stats.holm([0.03, None, 0.5, 0.01, 0.02]) == pytest.approx(
      [0.06, None, 0.5, 0.04, 0.06])
  assert stats.holm([0.4, 0.3]) == pytest.approx([0.6, 0.6])  # capped by the running max
  assert stats.holm([]) == []


def test_tost_equals_two_one_sided_scipy_tests_and_the_90_interval():
  d = np.array([0.004, -0.006, 0.010, 0.001, -0.002, 0.003])
  margin = 0.02
  got = stats.equivalence(d, margin)
  lower = scipy_stats.ttest_1samp(d, -margin, alternative='greater').pvalue
  upper = scipy_stats.ttest_1samp(d, margin, alternative='less').pvalue
  assert got['p'] == pytest.approx(max(lower, upper), rel=1e-10)
  ci = scipy_stats.ttest_1samp(d, 0.0).confidence_interval(0.90)
  assert got['ci90'] == pytest.approx([ci.low, ci.high], rel=1e-10)
  assert got['equivalent'] == (-margin < ci.low and ci.high < margin) == True  # noqa: E712
  assert stats.equivalence(d, 0.003)['equivalent'] is False


def test_power_and_seeds_needed_agree_with_simulation():
  rng = np.random.default_rng(0)
  effect, sd, n = 0.03, 0.03, 10
  diffs = rng.normal(effect, sd, size=(20000, n))
  p = scipy_stats.ttest_1samp(diffs, 0.0, axis=1).pvalue
  simulated = float((p < 0.05).mean())
  assert stats.paired_power(effect, sd, n) == pytest.approx(simulated, abs=0.015)
  need = stats.seeds_needed(effect, sd)
  assert stats.paired_power(effect, sd, need) >= 0.8 > stats.paired_power(effect, sd, need - 1)
  mde = stats.detectable_effect(sd, n)
  assert stats.paired_power(mde, sd, n) == pytest.approx(0.8, abs=1e-6)


def test_summary_reports_missing_metric_holm_tost_and_pilot():
  records = [{'variant': v, 'seed': s, 'metrics': {'acc': a, 'loss': l}, 'total_steps': 8,
              'variant_hash': 'h' + v}
             for v, s, a, l in [('a', 0, 0.5, 2.0), ('a', 1, 0.6, 1.8), ('a', 2, 0.55, 1.9),
                                ('b', 0, 0.7, 2.2), ('b', 1, 0.9, 2.1), ('b', 2, 0.75, 2.0)]]
  s = summary_lib.build_summary(records, ['a', 'b'], ['acc', 'loss', 'zero_shot/*/top1', 'accc'],
                                'a', margin=0.02, effect=0.03)
  assert s['schema'] == 2 and s['variants']['b']['config_hash'] == 'hb'
  assert s['variants']['b']['total_steps'] == 8
  assert [(m['variant'], m['metric']) for m in s['missing']] == [
      (v, m) for v in 'ab' for m in ('zero_shot/*/top1', 'accc')]
  assert s['missing'][1]['closest'] == ['acc']
  assert 'n' not in s['variants']['a']['metrics']['accc']
  diff = s['variants']['b']['difference_from_baseline']
  ps = [diff['acc']['p'], diff['loss']['p']]
  assert [diff['acc']['p_holm'], diff['loss']['p_holm']] == pytest.approx(stats.holm(ps))
  assert diff['acc']['equivalence']['margin'] == 0.02
  assert diff['acc']['power']['seeds_needed'] == stats.seeds_needed(0.03, diff['acc']['std'])
  assert diff['acc']['verdict'].startswith(('resolved', 'unresolved', 'equivalent'))
  md = summary_lib.format_markdown(s, 'demo')
  assert 'missing' in md and 'Tests and verdicts' in md


def test_mean_of_metrics_is_a_metric_with_its_own_paired_statistics():
  records = [{'variant': v, 'seed': s, 'metrics': {'v': x, 'a': y}, 'curve': {
      '4': {'v': x / 2, 'a': y / 2}, '8': {'v': x, 'a': y}}}
             for v, s, x, y in [('p', 0, 0.5, 0.3), ('p', 1, 0.6, 0.2), ('q', 0, 0.7, 0.5),
                                ('q', 1, 0.6, 0.6)]]
  s = summary_lib.build_summary(records, ['p', 'q'], ['mean(v,a)'], 'p')
  assert s['variants']['q']['per_seed']['mean(v,a)'] == pytest.approx({'0': 0.6, '1': 0.6})
  d = s['variants']['q']['difference_from_baseline']['mean(v,a)']
  assert d['mean'] == pytest.approx(np.mean([0.6 - 0.4, 0.6 - 0.4]))
  assert s['variants']['q']['curves']['mean(v,a)']['mean'] == pytest.approx([0.3, 0.6])
