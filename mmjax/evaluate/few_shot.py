"""Few-shot linear probes as big_vision's `fewshot_lsr` evaluator runs them (the protocol of
ViT, LiT, SigLIP...): closed-form least squares on frozen pooled features, fixed L2.

Protocol (big_vision/evaluators/fewshot_lsr.py and configs/common_fewshot.py):
- shots 1, 5, 10, 25; seeds 0, 1, 2; L2 = 2^10 = 1024 unless set.
- Per seed, `np.random.default_rng(seed)` permutes the training rows of each class
  (classes 0..C-1 in order); k-shot takes the first k of each class's permutation (fewer when a
  class has fewer), so the shot counts of one seed are nested.
- The selected features are centred and scaled with their own mean and std (+1e-5), a constant
  `BIAS` column is appended (large, so the bias is barely regularised) and targets are one-hot
  in {-1, +1}; `W = (X^T X + l2 I)^-1 X^T Y` (or `X^T (X X^T + l2 I)^-1 Y` when there are
  fewer rows than columns), via one eigendecomposition.
- top-1 of argmax(X_test W) on the whole test split; the report gives each seed and the mean.
float64 numpy on the host (big_vision computes in float32 on the CPU: results agree far below
0.1 points).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SHOTS = (1, 5, 10, 25)
SEEDS = (0, 1, 2)
L2_REG = 2.0 ** 10
BIAS = 100.0
REFERENCE = 'big_vision fewshot_lsr (google-research/big_vision, evaluators/fewshot_lsr.py)'


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """(x - mean) / std with a constant `BIAS` column appended: `[n, width + 1]`."""
  x = (np.asarray(x, np.float64) - mean) / std
  return np.concatenate([x, np.full((x.shape[0], 1), BIAS)], axis=1)


class RidgeSolver:
  """Least squares of {-1, +1} one-hot targets on standardised features, any L2 cheaply.

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


def class_permutations(y: np.ndarray, num_classes: int, seed: int) -> list[np.ndarray]:
  """Per class 0..C-1 in order, its training rows permuted by `default_rng(seed)`."""
  rng = np.random.default_rng(int(seed))
  return [rng.permutation(np.flatnonzero(y == c)) for c in range(num_classes)]


def select(perms: list[np.ndarray], shots: int) -> np.ndarray:
  """The rows of a k-shot problem: the first `shots` of each class's permutation, class order."""
  return np.concatenate([p[:shots] for p in perms]).astype(np.int64)


def few_shot(train_x, train_y, test_x, test_y, num_classes: int, shots: Sequence[int] = SHOTS,
             seeds: Sequence[int] = SEEDS, l2: float = L2_REG) -> dict[str, dict]:
  """`{'<k>shot': {'top1': mean over seeds, 'top1_std', 'per_seed', 'l2', 'examples'}}`.

  train/test features `[n, width]`, labels `[n]`. `examples` is the number of training rows of
  each seed's problem (k per class, less where a class has fewer than k).
  """
  train_x, test_x = np.asarray(train_x), np.asarray(test_x)
  train_y, test_y = np.asarray(train_y, np.int64), np.asarray(test_y, np.int64)
  out = {f'{k}shot': {'per_seed': [], 'examples': []} for k in shots}
  for seed in seeds:
    perms = class_permutations(train_y, num_classes, seed)
    for k in shots:
      rows = select(perms, k)
      solver = RidgeSolver(train_x[rows], train_y[rows], num_classes)
      acc = float(np.mean(solver.predict(test_x, l2) == test_y))
      out[f'{k}shot']['per_seed'].append(acc)
      out[f'{k}shot']['examples'].append(int(len(rows)))
  for v in out.values():
    v.update(top1=float(np.mean(v['per_seed'])), top1_std=float(np.std(v['per_seed'])),
             l2=float(l2), seeds=[int(s) for s in seeds])
  return out
