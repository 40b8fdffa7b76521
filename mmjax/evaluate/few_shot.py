"""Few-shot linear probes in the big_vision style: closed-form ridge regression on frozen features.

For each shot count k and seed, k training examples per class are drawn; features are
standardised with their mean and std and given a constant bias column (`BIAS`, large, so the bias
is barely regularised); targets are one-hot in {-1, +1}. The ridge solution
`W = (X^T X + l2 I)^-1 X^T Y` (or `X^T (X X^T + l2 I)^-1 Y` when there are fewer rows than
columns) is computed for every L2 in `L2_GRID` from one eigendecomposition. L2 is chosen on
held-out training examples (drawn from those not used for fitting), then the chosen W is scored
on the test set. float64 numpy on the host: a few thousand rows at most.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SHOTS = (1, 5, 10, 25)
SEEDS = (0, 1, 2)
BIAS = 100.0
L2_GRID = tuple(2.0 ** i for i in range(-10, 20))
HELD_OUT_PER_CLASS = 10


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """(x - mean) / std with a constant `BIAS` column appended: `[n, width + 1]`."""
  x = (np.asarray(x, np.float64) - mean) / std
  return np.concatenate([x, np.full((x.shape[0], 1), BIAS)], axis=1)


class RidgeSolver:
  """Ridge regression of {-1, +1} one-hot targets on standardised features, any L2 cheaply.

  x `[n, width]`, y `[n]` in [0, classes). `weights(l2)` -> `[width + 1, classes]`.
  """

  def __init__(self, x, y, num_classes: int):
    x = np.asarray(x, np.float64)
    self.mean = x.mean(axis=0, keepdims=True)
    self.std = x.std(axis=0, keepdims=True) + 1e-5
    x = standardise(x, self.mean, self.std)
    targets = 2.0 * np.eye(num_classes)[np.asarray(y, np.int64)] - 1.0
    if x.shape[0] >= x.shape[1]:  # (X^T X + l2 I)^-1 X^T Y = Q diag(1/(e + l2)) Q^T X^T Y
      self.eigs, q = np.linalg.eigh(x.T @ x)
      self.lhs, self.rhs = q, q.T @ (x.T @ targets)
    else:                         # X^T (X X^T + l2 I)^-1 Y = X^T Q diag(1/(e + l2)) Q^T Y
      self.eigs, q = np.linalg.eigh(x @ x.T)
      self.lhs, self.rhs = x.T @ q, q.T @ targets

  def weights(self, l2: float) -> np.ndarray:
    return (self.lhs / (self.eigs + l2)[None, :]) @ self.rhs

  def predict(self, x, l2: float) -> np.ndarray:
    """Predicted class `[n]` of raw features x `[n, width]`."""
    return np.argmax(standardise(x, self.mean, self.std) @ self.weights(l2), axis=1)


def _draw(y: np.ndarray, per_class: int, rng, exclude=None) -> np.ndarray:
  """Up to `per_class` row indices of each class, not in `exclude`, in random order."""
  rows = []
  for c in np.unique(y):
    idx = np.flatnonzero(y == c)
    if exclude is not None:
      idx = np.setdiff1d(idx, exclude)
    rows.append(rng.permutation(idx)[:per_class])
  return np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)


def choose_l2(solver: RidgeSolver, x_val, y_val, grid: Sequence[float] = L2_GRID) -> float:
  """The L2 of `grid` with the best accuracy on (x_val, y_val); the smallest one on ties."""
  y_val = np.asarray(y_val)
  accs = [float(np.mean(solver.predict(x_val, l2) == y_val)) for l2 in grid]
  return float(grid[int(np.argmax(accs))])


def few_shot(train_x, train_y, test_x, test_y, num_classes: int, shots: Sequence[int] = SHOTS,
             seeds: Sequence[int] = SEEDS) -> dict[str, dict]:
  """`{'<k>shot': {'top1': mean over seeds, 'top1_std', 'per_seed', 'l2'}}` (skips k when a
  class has fewer than k + 1 training examples: one must remain for choosing L2)."""
  train_x, test_x = np.asarray(train_x), np.asarray(test_x)
  train_y, test_y = np.asarray(train_y, np.int64), np.asarray(test_y, np.int64)
  counts = np.bincount(train_y, minlength=num_classes)
  out = {}
  for k in shots:
    if counts[counts > 0].min() < k + 1:
      continue
    accs, l2s = [], []
    for seed in seeds:
      rng = np.random.default_rng([int(seed), int(k)])
      fit = _draw(train_y, k, rng)
      held = _draw(train_y, HELD_OUT_PER_CLASS, rng, exclude=fit)
      solver = RidgeSolver(train_x[fit], train_y[fit], num_classes)
      l2 = choose_l2(solver, train_x[held], train_y[held])
      accs.append(float(np.mean(solver.predict(test_x, l2) == test_y)))
      l2s.append(l2)
    out[f'{k}shot'] = {'top1': float(np.mean(accs)), 'top1_std': float(np.std(accs)),
                       'per_seed': accs, 'l2': l2s}
  return out
