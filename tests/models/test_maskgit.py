"""MaskGIT decoding: the cosine schedule, every position filled in exactly the scheduled number
of steps, fixed tokens never re-masked or changed, and the most confident positions filled first."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models import maskgit


@pytest.mark.parametrize('n,steps', [(16, 8), (16, 1), (7, 7), (64, 12)])
def test_cosine_schedule(n, steps):
  left = maskgit.cosine_schedule(n, steps)
  assert len(left) == steps and left[-1] == 0
  assert all(a > b for a, b in zip([n] + left, left))               # at least one per step
  if (n, steps) == (16, 8):  # floor(16 cos(pi/2 * s/8)), s = 1..8, by hand
    assert left == [15, 14, 13, 11, 8, 6, 3, 0]
  if steps == n:             # as many steps as positions: one per step
    assert left == list(range(n - 1, -1, -1))

def test_decode_fills_every_position_in_the_scheduled_steps():
  b, n, v, steps = 3, 16, 11, 6
  table = jax.random.normal(jax.random.key(0), (b, n, v)) * 3
  seen = []

  def predict(ids, known):
    seen.append((np.asarray(ids), np.asarray(known)))
    return table

  ids, history = maskgit.decode(predict, b, n, steps, jax.random.key(1), temperature=0.0,
                                choice_temperature=0.0)
  left = maskgit.cosine_schedule(n, steps)
  np.testing.assert_array_equal(history, np.array([[n - k] * b for k in left]))
  assert len(seen) == steps and np.asarray(ids).shape == (b, n)
  np.testing.assert_array_equal(ids, np.asarray(table).argmax(-1))   # argmax everywhere
  for (i0, k0), (i1, k1) in zip(seen, seen[1:] + [(np.asarray(ids), np.ones((b, n), int))]):
    assert np.all(k1 >= k0) and np.all(i1[k0 > 0] == i0[k0 > 0])    # fixed stays fixed
  # Without noise the first step fixes the most confident position of each example.
  conf = np.asarray(jax.nn.log_softmax(table, -1)).max(-1)
  first = seen[1][1]
  np.testing.assert_array_equal(first.argmax(-1), conf.argmax(-1))
  with pytest.raises(ValueError, match='steps'):
    maskgit.cosine_schedule(4, 5)
