"""The point-cloud embedding against a numpy reference of its grouping, and its invariances:
permuting the points, or adding masked padding points, leaves the tokens unchanged."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mmjax.models import point_cloud as pc


def _reference_groups(points, mask, groups, k):
  """Farthest-point sampling from the valid point farthest from the origin, then the k nearest
  valid points of each centre: (centre coordinates [g, 3], new [g], neighbour sets)."""
  valid = np.flatnonzero(mask)
  p = points.astype(np.float64)
  chosen = [valid[np.argmax((p[valid] ** 2).sum(1))]]
  new = [True]
  best = ((p[valid] - p[chosen[0]]) ** 2).sum(1)
  for _ in range(groups - 1):
    j = int(np.argmax(best))
    new.append(best[j] > 0)
    chosen.append(valid[j])
    best = np.minimum(best, ((p[valid] - p[valid[j]]) ** 2).sum(1))
  centres = p[chosen]
  sets = []
  for c in centres:
    d = ((p[valid] - c) ** 2).sum(1)
    sets.append({tuple(np.round(p[v], 6)) for v in valid[np.argsort(d)[:k]]})
  return centres, np.array(new), sets


def _cloud(seed, n=40, valid=40):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 3)).astype(np.float32)
  m = np.zeros(n, np.int32)
  m[:valid] = 1
  return x, m


def test_grouping_matches_numpy_reference():
  x, m = _cloud(0, n=40, valid=33)
  idx, new = pc.farthest_point_sampling(jnp.asarray(x[None]), jnp.asarray(m[None]), 6)
  centres, ref_new, sets = _reference_groups(x, m, 6, 5)
  np.testing.assert_allclose(x[np.asarray(idx[0])], centres, rtol=0, atol=1e-6)
  assert np.array_equal(np.asarray(new[0]), ref_new)
  nb, near = pc.knn_groups(jnp.asarray(x[None]), jnp.asarray(m[None]),
                           jnp.asarray(x[np.asarray(idx[0])][None]), 5)
  assert bool(near.all())
  for g in range(6):
    got = {tuple(np.round(x[i].astype(np.float64), 6)) for i in np.asarray(nb[0, g])}
    assert got == sets[g]
    assert all(m[i] for i in np.asarray(nb[0, g]))   # padding is never gathered


def _embed():
  cfg = ml_collections.ConfigDict(dict(
      width=16, point_cloud=dict(groups=8, group_size=4, hidden=12)))
  return pc.PointCloudEmbed(cfg, rngs=nnx.Rngs(0), dtype=jnp.float32)


def _sorted_tokens(tokens, mask):
  """Real tokens as a set (rows sorted): the encoder is order-free over point tokens."""
  t = np.asarray(tokens)[np.asarray(mask).astype(bool)]
  return t[np.lexsort(t.T[::-1])]


def test_order_and_padding_invariance():
  embed = _embed()
  x, m = _cloud(1, n=30, valid=30)
  base, bmask = embed(jnp.asarray(x[None]), jnp.asarray(m[None]))
  perm = np.random.default_rng(2).permutation(30)
  shuffled, smask = embed(jnp.asarray(x[perm][None]), jnp.asarray(m[perm][None]))
  np.testing.assert_allclose(np.asarray(shuffled), np.asarray(base), rtol=1e-5, atol=1e-5)
  assert np.array_equal(np.asarray(smask), np.asarray(bmask))
  # padding: 10 more points far away, masked, at the front and at the back
  junk = np.random.default_rng(3).normal(50.0, 1.0, size=(10, 3)).astype(np.float32)
  for xp, mp in ((np.concatenate([junk, x]), np.concatenate([np.zeros(10, np.int32), m])),
                 (np.concatenate([x, junk]), np.concatenate([m, np.zeros(10, np.int32)]))):
    padded, pmask = embed(jnp.asarray(xp[None]), jnp.asarray(mp[None]))
    np.testing.assert_allclose(np.asarray(padded), np.asarray(base), rtol=1e-5, atol=1e-5)
    assert np.array_equal(np.asarray(pmask), np.asarray(bmask))


def test_fewer_points_than_groups_masks_the_repeats():
  embed = _embed()
  x, m = _cloud(4, n=12, valid=5)        # 5 distinct valid points, 8 groups
  tokens, mask = embed(jnp.asarray(x[None]), jnp.asarray(m[None]))
  assert int(np.asarray(mask).sum()) == 5
  assert np.all(np.asarray(tokens)[0][np.asarray(mask)[0] == 0] == 0)
  # the same five points alone, in another order, give the same real tokens
  perm = np.array([3, 0, 4, 1, 2])
  alone, amask = embed(jnp.asarray(x[:5][perm][None]), jnp.ones((1, 5), jnp.int32))
  np.testing.assert_allclose(_sorted_tokens(alone, amask), _sorted_tokens(tokens, mask),
                             rtol=1e-5, atol=1e-5)


def test_host_transform_samples_and_pads():
  from mmjax.data import transforms
  sets = np.empty(2, object)
  sets[0] = np.arange(20, dtype=np.float32).reshape(10, 2)         # 2-D: z = 0
  sets[1] = np.ones((3, 3), np.float32)
  pts, mask = transforms.point_sets(sets, 6, 3, None)
  assert pts.shape == (2, 6, 3) and mask.tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
  assert np.all(pts[0, :, 2] == 0) and np.all(pts[1, 3:] == 0)
  assert pts[0, 0, 0] == 0 and pts[0, -1, 0] == 18                  # evenly spaced, ends kept
  train, _ = transforms.point_sets(sets, 6, 3, np.random.default_rng(0))
  rows = {tuple(r) for r in sets[0][:, :2]}
  assert all(tuple(r[:2]) in rows for r in train[0]) and len({tuple(r) for r in train[0]}) == 6
