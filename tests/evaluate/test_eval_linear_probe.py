"""Linear probe: learns a separable toy problem, is near chance on random labels, deterministic."""

import numpy as np
import pytest

from mmjax.evaluate import linear_probe


def _blobs(rng, n, centers):
  y = rng.integers(len(centers), size=n)
  x = centers[y] + 0.5 * rng.normal(size=(n, centers.shape[1]))
  return x.astype(np.float32), y


def test_separable_problem_is_learned():
  rng = np.random.default_rng(0)
  centers = 4.0 * rng.normal(size=(5, 16))
  train_x, train_y = _blobs(rng, 400, centers)
  test_x, test_y = _blobs(rng, 200, centers)
  out = linear_probe.train_linear_probe(train_x, train_y, test_x, test_y, 5)
  assert out['top1'] > 0.95
  assert out['train_top1'] > 0.95


def test_random_labels_are_near_chance():
  rng = np.random.default_rng(1)
  train_x = rng.normal(size=(400, 16)).astype(np.float32)
  test_x = rng.normal(size=(1000, 16)).astype(np.float32)
  train_y, test_y = rng.integers(10, size=400), rng.integers(10, size=1000)
  out = linear_probe.train_linear_probe(train_x, train_y, test_x, test_y, 10, l2=1e-2)
  assert out['top1'] < 0.2  # chance is 0.1


def test_deterministic():
  rng = np.random.default_rng(2)
  x, y = rng.normal(size=(90, 8)).astype(np.float32), rng.integers(3, size=90)
  a = linear_probe.train_linear_probe(x, y, x, y, 3)
  b = linear_probe.train_linear_probe(x, y, x, y, 3)
  assert a == b and a['converged']


def test_bad_labels_are_reported():
  x = np.zeros((4, 2), np.float32)
  with pytest.raises(ValueError, match=r'train labels must lie in \[0, 2\)'):
    linear_probe.train_linear_probe(x, [0, 1, 2, 0], x, [0, 1, 1, 0], 2)
