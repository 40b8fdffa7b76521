"""Linear probe: multinomial logistic regression on frozen pooled features, solved to its optimum.

`linear_probe` follows CLIP_benchmark's linear-probe protocol (LAION-AI/CLIP_benchmark,
metrics/linear_probe.py): the L2 strength is searched on a validation split (the dataset's, or a
held-out fifth of the training split) over `L2_GRID` = logspace(-6, -2, 97) with its
coarse-to-fine peak search (every 8th value, then halving steps around the best), then the probe
is refitted on train + validation with the chosen L2 and scored on the test split.

The solver is scikit-learn's L-BFGS `LogisticRegression`, run to convergence (gradient
tolerance `TOL`), on features standardised with the fitting split's mean and std. The objective
is `mean cross-entropy + l2 / 2 * |W|^2` (bias unpenalised), i.e. sklearn's `C = 1 / (l2 * n)`.
Deterministic: L-BFGS from zero, no sampling.
"""

from __future__ import annotations

import warnings

import numpy as np
import threadpoolctl
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from mmjax.evaluate import metrics

L2_GRID = tuple(float(v) for v in np.logspace(-6, -2, num=97))
COARSE_STEP = 8
HOLD_OUT = 0.2
TOL = 1e-7
MAX_ITER = 5000
SMALL = 1 << 20   # features of fewer elements are fitted on one thread
REFERENCE = 'CLIP_benchmark linear probe (LAION-AI/CLIP_benchmark, metrics/linear_probe.py)'


def _check(x, y, num_classes: int, name: str) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.int64).reshape(-1)
  if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
    raise ValueError(f'{name} features {x.shape} and labels {y.shape} must be a non-empty '
                     '[n, width] and [n].')
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f'{name} labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}].')
  return x, y


def fit(x, y, l2: float) -> LogisticRegression:
  """Logistic regression minimising mean CE + l2/2 |W|^2 on x `[n, width]` (standardised)."""
  model = LogisticRegression(C=1.0 / (float(l2) * len(y)), tol=TOL, max_iter=MAX_ITER)
  # Small problems run far faster on one BLAS thread (no hand-offs); large ones use them all.
  threads = 1 if x.size < SMALL else None
  with warnings.catch_warnings(), threadpoolctl.threadpool_limits(threads):
    warnings.simplefilter('ignore', ConvergenceWarning)   # reported as `converged` instead
    model.fit(x, y)
  return model


def _logits(model: LogisticRegression, x: np.ndarray, num_classes: int) -> np.ndarray:
  """Logits `[n, num_classes]`; classes absent from the fitting rows score -inf."""
  out = np.full((x.shape[0], num_classes), -np.inf)
  scores = model.decision_function(x)
  if scores.ndim == 1:   # two classes seen: one column, positive = the second class
    scores = np.stack([-scores, scores], axis=1) / 2.0
  out[:, model.classes_] = scores
  return out


def train_linear_probe(train_x, train_y, test_x, test_y, num_classes: int, *,
                       l2: float = 1e-4) -> dict[str, float]:
  """Fits on `[n, width]` features with labels `[n]` at one L2; returns test `top1`,
  `train_top1` and `loss` (the objective at the optimum)."""
  train_x, train_y = _check(train_x, train_y, num_classes, 'train')
  test_x, test_y = _check(test_x, test_y, num_classes, 'test')
  if train_x.shape[1] != test_x.shape[1]:
    raise ValueError(f'train width {train_x.shape[1]} differs from test width {test_x.shape[1]}.')
  mean = train_x.mean(axis=0)
  std = train_x.std(axis=0) + 1e-6
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
  model = fit(train_x, train_y, l2)
  train_logits = _logits(model, train_x, num_classes)
  shifted = train_logits - train_logits.max(axis=1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  ce = -np.mean(log_p[np.arange(len(train_y)), train_y])
  return {
      'top1': metrics.topk_accuracy(_logits(model, test_x, num_classes), test_y, 1),
      'train_top1': metrics.topk_accuracy(train_logits, train_y, 1),
      'loss': float(ce + 0.5 * l2 * np.sum(model.coef_ ** 2)),
      'converged': bool(np.max(model.n_iter_) < MAX_ITER),
  }


def split_validation(n: int, fraction: float = HOLD_OUT, seed: int = 0):
  """Deterministic (train rows, validation rows) of `n` training examples."""
  order = np.random.default_rng(seed).permutation(n)
  k = max(1, int(round(n * fraction)))
  return np.sort(order[k:]), np.sort(order[:k])


def peak_search(score, n: int, coarse: int = COARSE_STEP) -> int:
  """Index in [0, n) maximising `score(i)`: every `coarse`-th index, then steps halving from
  coarse / 2 around the best so far (CLIP_benchmark's search). Ties go to the lower index."""
  seen: dict[int, float] = {}

  def best_of(idxs):
    for i in idxs:
      if 0 <= i < n and i not in seen:
        seen[i] = score(i)
    return max(seen, key=lambda i: (seen[i], -i))

  best = best_of(range(0, n, coarse))
  step = coarse // 2
  while step >= 1:
    best = best_of((best - step, best + step))
    step //= 2
  return best


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int, val_x=None, val_y=None, *,
                 l2_grid=L2_GRID, seed: int = 0) -> dict:
  """Logistic regression with L2 chosen on validation top-1 (see the module docstring).

  train/val/test features `[n, width]` and labels `[n]`; without val_x, a held-out fifth of the
  training rows validates. Returns test `top1`, `train_top1`, the chosen `l2` and `val_top1`
  per L2 tried.
  """
  train_x, train_y = np.asarray(train_x), np.asarray(train_y)
  if val_x is None:
    fit_rows, val = split_validation(len(train_y), seed=seed)
    val_x, val_y = train_x[val], train_y[val]
    fit_x, fit_y = train_x[fit_rows], train_y[fit_rows]
  else:
    fit_x, fit_y = train_x, train_y
  grid = tuple(float(v) for v in l2_grid)
  tried: dict[float, float] = {}

  def score(i):
    tried[grid[i]] = train_linear_probe(fit_x, fit_y, val_x, val_y, num_classes,
                                        l2=grid[i])['top1']
    return tried[grid[i]]

  best = grid[peak_search(score, len(grid))]
  final = train_linear_probe(np.concatenate([fit_x, val_x]), np.concatenate([fit_y, val_y]),
                             test_x, test_y, num_classes, l2=best)
  return {'top1': final['top1'], 'train_top1': final['train_top1'], 'l2': float(best),
          'converged': final['converged'],
          'val_top1': {f'{l2:.4g}': v for l2, v in sorted(tried.items())},
          'solver': 'sklearn LogisticRegression (lbfgs, converged)'}
