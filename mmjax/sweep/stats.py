"""Spread over seeds: mean, sample standard deviation and a Student-t 95% interval.

Convention: `std` uses ddof=1 (the unbiased sample variance); `ci95` is
`mean -/+ t_{0.975, n-1} * std / sqrt(n)`, the two-sided 95% confidence interval for the mean
of normally distributed values. With n = 1 there is no spread: std and ci95 are None.
A paired difference subtracts the baseline's value at the same seed, run by run, so variation
common to both (initialisation, data order) cancels; its interval is the same t interval on the
differences.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
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
