"""Objectives against straightforward numpy implementations."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

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


def _np_mil_nce(a, b, valid, t):
  """MIL-NCE over the valid instances only, written out example by example."""
  n, k, _ = b.shape
  inst = [(i, j) for i in range(n) for j in range(k) if valid[i, j]]
  emb = _normalize(np.stack([b[i, j] for i, j in inst]))
  s = _normalize(a) @ emb.T / t                          # [n, number of valid instances]
  owner = np.array([i for i, _ in inst])
  a2b = [np.log(np.exp(s[i]).sum()) - np.log(np.exp(s[i, owner == i]).sum())
         for i in range(n) if (owner == i).any()]
  b2a = [np.log(np.exp(s[:, c]).sum()) - s[owner[c], c] for c in range(len(inst))]
  return 0.5 * (np.mean(a2b) + np.mean(b2a))


def test_mil_nce_with_masked_instances_matches_numpy():
  rng = np.random.default_rng(3)
  n, k, d, t = 5, 3, 6, 0.3
  a, b = rng.normal(size=(n, d)), rng.normal(size=(n, k, d))
  valid = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1]], bool)
  got = objectives.mil_nce_loss(jnp.asarray(a), jnp.asarray(b), t, jnp.asarray(valid))
  np.testing.assert_allclose(got, _np_mil_nce(a, b, valid, t), rtol=1e-5)
  # A masked instance is neither positive nor negative: its embedding has no effect.
  b2 = b.copy()
  b2[~valid] = 100.0 * rng.normal(size=(int((~valid).sum()), d))
  np.testing.assert_allclose(objectives.mil_nce_loss(a, b2, t, valid), got, rtol=1e-6)
  grad = jax.grad(lambda x: objectives.mil_nce_loss(a, x, t, valid))(jnp.asarray(b))
  assert np.all(np.asarray(grad)[~valid] == 0) and np.abs(np.asarray(grad)[valid]).sum() > 0


def test_task_loss_masks_captions_the_loader_padded():
  """task_loss reads instance validity from text_mask (an all-zero row = a missing caption)."""
  from mmjax.core.tasks import Resolution, Task

  class Model:
    def temperature(self, a, b):
      return jnp.float32(0.3)

  rng = np.random.default_rng(4)
  n, k, d = 4, 3, 5
  video, text = rng.normal(size=(n, d)), rng.normal(size=(n, k, d))
  mask = np.ones((n, k, 7), np.int32)
  mask[1, 1:] = 0
  mask[3, 2] = 0
  task = Task(name='t', dataset='x', split='train', modalities=('video', 'text'), batch_size=n,
              resolutions=(Resolution(),), mil_nce=(('video', 'text'),), text_instances=k)
  outputs = {'embeddings': {'video': jnp.asarray(video), 'text': jnp.asarray(text)},
             'logits': {}, 'aux': {}}
  config = ml_collections.ConfigDict({'model': {}})
  loss, parts = objectives.task_loss(Model(), outputs, {'text_mask': mask}, task, config)
  np.testing.assert_allclose(parts['mil_nce/video_text'],
                             _np_mil_nce(video, text, mask.any(-1), 0.3), rtol=1e-5)
  np.testing.assert_allclose(loss, parts['mil_nce/video_text'], rtol=1e-6)


def test_mil_nce_with_one_instance_equals_nce():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
  np.testing.assert_allclose(objectives.mil_nce_loss(a, b[:, None], 0.2),
                             objectives.nce_loss(a, b, 0.2), rtol=1e-5)


def test_softmax_cross_entropy_hand_value():
  logits = np.array([[0.0, np.log(3.0)]])   # p = [0.25, 0.75]
  np.testing.assert_allclose(objectives.softmax_cross_entropy(logits, np.array([1])),
                             -np.log(0.75), rtol=1e-6)
