"""Spread over seeds: mean, sample standard deviation and a Student-t 95% interval.

Convention: `std` uses ddof=1 (the unbiased sample variance); `ci95` is
`mean -/+ t_{0.975, n-1} * std / sqrt(n)`, the two-sided 95% confidence interval for the mean
of normally distributed values. With n = 1 there is no spread: std and ci95 are None.
A paired difference subtracts the baseline's value at the same seed, run by run, so variation
common to both (initialisation, data order) cancels; its interval is the same t interval on the
differences.

For a question the spread must answer: Welch's unpaired interval, Holm's adjustment across a
sweep's comparisons, a two-one-sided-tests equivalence check against a margin, and the paired
t-test's power (the seeds a target effect needs, the smallest effect the seeds at hand detect).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import optimize as scipy_optimize
from scipy import stats as scipy_stats


def describe(values: Sequence[float]) -> dict:
  """`{"mean", "std", "ci95": [lo, hi], "n"}` of the values (None where undefined)."""
  x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
  n = int(x.size)
  if n == 0:
    return {'mean': None, 'std': None, 'ci95': None, 'n': 0}
  mean = float(x.mean())
  if n < 2:
    return {'mean': mean, 'std': None, 'ci95': None, 'n': 1}
  std = float(x.std(ddof=1))
  half = float(scipy_stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
  return {'mean': mean, 'std': std, 'ci95': [mean - half, mean + half], 'n': n}


def paired_difference(variant: dict[int, float], baseline: dict[int, float]) -> dict:
  """`describe` of variant - baseline over the seeds both have, plus the seeds used."""
  seeds = sorted(set(variant) & set(baseline))
  d = describe([variant[s] - baseline[s] for s in seeds])
  d['seeds'] = seeds
  return d


def _t_p(t: float, df: float) -> float:
  """Two-sided p of a t statistic with `df` degrees of freedom."""
  return float(2.0 * scipy_stats.t.sf(abs(t), df))


def paired_test(variant: dict[int, float], baseline: dict[int, float]) -> dict:
  """`paired_difference` plus its two-sided paired t-test p (`p`; None below 2 seeds or with
  no spread)."""
  d = paired_difference(variant, baseline)
  d['p'] = None
  if d['n'] >= 2 and d['std']:
    d['p'] = _t_p(d['mean'] / (d['std'] / math.sqrt(d['n'])), d['n'] - 1)
  return d


def welch(variant: Sequence[float], baseline: Sequence[float]) -> dict | None:
  """Welch's unequal-variance t interval and test of mean(variant) - mean(baseline), unpaired:
  `{"mean", "ci95": [lo, hi], "p", "df"}`; df by Welch-Satterthwaite. None with fewer than two
  values on a side or no spread at all."""
  a = np.asarray(variant, np.float64)
  b = np.asarray(baseline, np.float64)
  if a.size < 2 or b.size < 2:
    return None
  va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
  se2 = va + vb
  if se2 == 0:
    return None
  df = se2 ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
  mean = float(a.mean() - b.mean())
  se = math.sqrt(se2)
  half = float(scipy_stats.t.ppf(0.975, df)) * se
  return {'mean': mean, 'ci95': [mean - half, mean + half], 'p': _t_p(mean / se, df),
          'df': float(df)}


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
  """Holm's step-down adjustment of a family of p values (None entries are not tested and stay
  None): the k-th smallest of m becomes max over j <= k of min(1, (m - j + 1) p_(j))."""
  tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
  m = len(tested)
  out: list[float | None] = [None] * len(pvalues)
  running = 0.0
  for rank, (p, i) in enumerate(tested):
    running = max(running, min(1.0, (m - rank) * p))
    out[i] = running
  return out


def equivalence(differences: Sequence[float], margin: float) -> dict | None:
  """Two one-sided paired t-tests (TOST) of |mean difference| < margin: `{"margin", "p",
  "ci90", "equivalent"}`; p is the larger one-sided p, equivalent when p < 0.05 (the same as the
  90% interval lying inside (-margin, margin)). None below 2 values or with no spread."""
  d = np.asarray(differences, np.float64)
  n = d.size
  if n < 2 or d.std(ddof=1) == 0:
    return None
  mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n)
  p_low = float(scipy_stats.t.sf((mean + margin) / se, n - 1))   # H0: mean <= -margin
  p_high = float(scipy_stats.t.cdf((mean - margin) / se, n - 1))  # H0: mean >= +margin
  half = float(scipy_stats.t.ppf(0.95, n - 1)) * se
  p = max(p_low, p_high)
  return {'margin': float(margin), 'p': p, 'ci90': [mean - half, mean + half],
          'equivalent': bool(p < 0.05)}


def paired_power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
  """Power of the two-sided paired t-test at `n` pairs to detect a true mean difference
  `effect` when the differences have standard deviation `sd` (noncentral t)."""
  if n < 2:
    return 0.0
  df = n - 1
  nc = effect / (sd / math.sqrt(n))
  crit = scipy_stats.t.ppf(1 - alpha / 2, df)
  power = float(scipy_stats.nct.sf(crit, df, nc) + scipy_stats.nct.cdf(-crit, df, nc))
  if not math.isfinite(power):  # nct fails far in the tail, where the power is ~1 or ~alpha
    power = 1.0 if abs(nc) > crit else alpha
  return power


def seeds_needed(effect: float, sd: float, power: float = 0.8, alpha: float = 0.05,
                 most: int = 1000) -> int | None:
  """Smallest number of paired seeds whose paired t-test reaches `power` for `effect` (None if
  more than `most`)."""
  if sd == 0:
    return 2
  for n in range(2, most + 1):
    if paired_power(effect, sd, n, alpha) >= power:
      return n
  return None


def detectable_effect(sd: float, n: int, power: float = 0.8, alpha: float = 0.05) -> float | None:
  """The smallest true difference the paired t-test at `n` seeds detects with `power` (None
  below 2 seeds)."""
  if n < 2:
    return None
  if sd == 0:
    return 0.0
  hi = sd
  while paired_power(hi, sd, n, alpha) < power:
    hi *= 2
  return float(scipy_optimize.brentq(lambda e: paired_power(e, sd, n, alpha) - power, 0.0, hi))
