"""The M3CoL and distillation loss contracts against loop-by-loop numpy implementations."""

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.train.objectives import distillation_loss, m3col_loss


def _cos(u, v):
  return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def _np_m3col(mixed, other, perm, lam, t):
  b = mixed.shape[0]
  total = 0.0
  for i in range(b):
    s = np.array([_cos(mixed[i], other[j]) / t for j in range(b)])
    log_z = np.log(np.sum(np.exp(s - s.max()))) + s.max()
    logp = s - log_z
    total += -(lam[i] * logp[i] + (1 - lam[i]) * logp[perm[i]])
  return total / b


def _np_softmax(row):
  e = np.exp(row - row.max())
  return e / e.sum()


def _np_distill(sa, sb, ta, tb, st, tt):
  b = sa.shape[0]
  s = np.array([[_cos(sa[i], sb[j]) / st for j in range(b)] for i in range(b)])
  t = np.array([[_cos(ta[i], tb[j]) / tt for j in range(b)] for i in range(b)])

  def mean_kl(tm, sm):
    kls = []
    for r in range(tm.shape[0]):
      p, q = _np_softmax(tm[r]), _np_softmax(sm[r])
      kls.append(np.sum(p * np.log(p / q)))
    return np.mean(kls)
  return 0.5 * (mean_kl(t, s) + mean_kl(t.T, s.T))


def test_m3col_loss_matches_numpy():
  rng = np.random.default_rng(0)
  b, d = 7, 5
  mixed, other = rng.normal(size=(b, d)), rng.normal(size=(b, d))
  perm, lam = rng.permutation(b), rng.uniform(size=b)
  got = m3col_loss(jnp.asarray(mixed), jnp.asarray(other), jnp.asarray(perm), jnp.asarray(lam),
                   0.2)
  np.testing.assert_allclose(got, _np_m3col(mixed, other, perm, lam, 0.2), rtol=1e-5)
  assert got.dtype == jnp.float32


def test_m3col_loss_with_lam_one_is_the_one_sided_nce():
  rng = np.random.default_rng(1)
  mixed, other = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
  perm = rng.permutation(5)
  got = m3col_loss(jnp.asarray(mixed), jnp.asarray(other), jnp.asarray(perm), jnp.ones(5), 0.5)
  s = np.array([[_cos(mixed[i], other[j]) / 0.5 for j in range(5)] for i in range(5)])
  expect = np.mean([-(s[i, i] - np.log(np.exp(s[i]).sum())) for i in range(5)])
  np.testing.assert_allclose(got, expect, rtol=1e-5)


def test_distillation_loss_matches_numpy():
  rng = np.random.default_rng(2)
  b = 6
  sa, sb = rng.normal(size=(b, 4)), rng.normal(size=(b, 4))
  ta, tb = rng.normal(size=(b, 9)), rng.normal(size=(b, 9))
  got = distillation_loss(*(jnp.asarray(x) for x in (sa, sb, ta, tb)), 0.1, 0.05)
  np.testing.assert_allclose(got, _np_distill(sa, sb, ta, tb, 0.1, 0.05), rtol=1e-5)


def test_distillation_loss_is_zero_when_student_equals_teacher_and_teacher_gets_no_gradient():
  rng = np.random.default_rng(3)
  a, b = jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray(rng.normal(size=(4, 3)))
  np.testing.assert_allclose(distillation_loss(a, b, 2 * a, 3 * b, 0.1, 0.1), 0.0, atol=1e-6)
  g = jax.grad(lambda ta: distillation_loss(a * 1.1, b, ta, b, 0.1, 0.1))(a)
  np.testing.assert_array_equal(g, np.zeros_like(g))
