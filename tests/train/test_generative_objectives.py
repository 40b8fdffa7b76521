"""The generative loss contracts against plain numpy."""

import numpy as np

from mmjax.train.objectives import captioning_loss, masked_reconstruction_loss


def _np_caption(logits, targets, mask):
  total, count = 0.0, 0
  for i in range(logits.shape[0]):
    for t in range(logits.shape[1]):
      if mask[i, t]:
        row = logits[i, t].astype(np.float64)
        lse = np.log(np.exp(row - row.max()).sum()) + row.max()
        total += lse - row[targets[i, t]]
        count += 1
  return total / count


def test_captioning_loss_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32) * 3
  targets = rng.integers(0, 7, size=(3, 5))
  mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
  got = captioning_loss(logits.astype(np.float16), targets, mask)
  assert got.dtype == np.float32
  np.testing.assert_allclose(float(captioning_loss(logits, targets, mask)),
                             _np_caption(logits, targets, mask), rtol=1e-5)
  # Masked-out positions do not matter.
  logits2 = logits.copy()
  logits2[0, 4] += 100.0
  np.testing.assert_allclose(float(captioning_loss(logits2, targets, mask)),
                             _np_caption(logits, targets, mask), rtol=1e-5)


def test_masked_reconstruction_loss_matches_numpy():
  rng = np.random.default_rng(1)
  pred = rng.normal(size=(2, 6, 4)).astype(np.float32)
  target = rng.normal(size=(2, 6, 4)).astype(np.float32)
  mask = np.array([[1, 0, 1, 0, 0, 1], [0, 0, 0, 0, 1, 0]])
  per_patch = ((pred - target) ** 2).mean(-1)
  want = per_patch[mask == 1].mean()
  got = masked_reconstruction_loss(pred, target, mask)
  assert got.dtype == np.float32
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  # Unmasked (visible) patches are not scored.
  pred[0, 1] += 10.0
  np.testing.assert_allclose(float(masked_reconstruction_loss(pred, target, mask)), want, rtol=1e-5)
