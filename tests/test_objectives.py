"""Objectives against straightforward numpy implementations."""

import numpy as np
import jax.numpy as jnp

from mmjax.train import objectives


def _np_log_softmax(x, axis):
  x = x - x.max(axis=axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _normalize(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_nce_loss_matches_numpy():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  t = 0.3
  logits = _normalize(a) @ _normalize(b).T / t
  expect = 0.5 * (-np.diag(_np_log_softmax(logits, 1)).mean()
                  - np.diag(_np_log_softmax(logits, 0)).mean())
  got = objectives.nce_loss(jnp.asarray(a), jnp.asarray(b), t)
  np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_nce_loss_is_small_for_matching_pairs_and_scale_invariant():
  x = np.eye(4, 8) * 3.0
  assert float(objectives.nce_loss(x, 5.0 * x, 0.05)) < 1e-3
  assert float(objectives.nce_loss(x, x[::-1], 0.05)) > 10.0


def test_mil_nce_matches_numpy():
  rng = np.random.default_rng(1)
  n, k, d, t = 4, 3, 5, 0.5
  a, b = rng.normal(size=(n, d)), rng.normal(size=(n, k, d))
  s = _normalize(a) @ _normalize(b.reshape(n * k, d)).T / t
  owner = np.arange(n * k) // k
  a2b = []
  for i in range(n):
    pos = np.log(np.exp(s[i, owner == i]).sum())
    a2b.append(np.log(np.exp(s[i]).sum()) - pos)
  b2a = -_np_log_softmax(s.T, 1)[np.arange(n * k), owner]
  expect = 0.5 * (np.mean(a2b) + np.mean(b2a))
  got = objectives.mil_nce_loss(jnp.asarray(a), jnp.asarray(b), t)
  np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_mil_nce_with_one_instance_equals_nce():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
  np.testing.assert_allclose(objectives.mil_nce_loss(a, b[:, None], 0.2),
                             objectives.nce_loss(a, b, 0.2), rtol=1e-5)


def test_softmax_cross_entropy_hand_value():
  logits = np.array([[0.0, np.log(3.0)]])   # p = [0.25, 0.75]
  np.testing.assert_allclose(objectives.softmax_cross_entropy(logits, np.array([1])),
                             -np.log(0.75), rtol=1e-6)
