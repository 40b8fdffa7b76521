"""Point clouds -> tokens: sampled centres, their nearest points, a small PointNet per group.

As Point-BERT and Meta-Transformer tokenise point clouds: `groups` centres are chosen by
farthest-point sampling (the first is the valid point farthest from the origin, each next one
the valid point farthest from those chosen), each centre gathers its `group_size` nearest
valid points, and a shared two-layer MLP on the points' offsets from their centre, max-pooled
over the group, gives the group's token; an MLP of the centre's coordinates is its position.

Order-invariant: nothing depends on where a point sits in the input (a permutation gives the
same tokens, up to exact distance ties), and padding points (mask 0) are never chosen nor
gathered. A cloud with fewer distinct valid points than `groups` repeats centres; the repeats
are masked tokens. Input `[batch, points, 3]` float32 (2-D sets have z = 0) and its mask
`[batch, points]`; output tokens `[batch, groups, width]` and their mask `[batch, groups]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.models.layers import Dense

_FAR = 1e30


def squared_distances(points: jax.Array, centres: jax.Array) -> jax.Array:
  """`[b, n, 3]`, `[b, g, 3]` -> float32 `[b, g, n]`, summed per point (no matmul trick: each
  distance is computed from its own two points alone, so it does not depend on order)."""
  diff = centres[:, :, None, :].astype(jnp.float32) - points[:, None, :, :].astype(jnp.float32)
  return jnp.sum(diff * diff, axis=-1)


def farthest_point_sampling(points: jax.Array, mask: jax.Array, num: int):
  """Indices `[b, num]` of the centres and which are new (not a repeat) `[b, num]` bool."""
  valid = jnp.asarray(mask).astype(bool)
  p = jnp.asarray(points, jnp.float32)
  start = jnp.argmax(jnp.where(valid, jnp.sum(p * p, -1), -1.0), axis=1)      # [b]
  b = jnp.arange(p.shape[0])
  best = jnp.where(valid, _FAR, -1.0)                      # distance to the chosen set

  def pick(carry, _):
    best, last = carry
    d = jnp.sum(jnp.square(p - p[b, last][:, None]), -1)
    best = jnp.where(valid, jnp.minimum(best, d), -1.0)
    nxt = jnp.argmax(best, axis=1)
    return (best, nxt), (nxt, best[b, nxt] > 0)

  (_, _), (rest, new) = jax.lax.scan(pick, (best, start), None, length=num - 1)
  idx = jnp.concatenate([start[:, None], rest.T], axis=1)
  first = valid.any(axis=1)[:, None]
  return idx, jnp.concatenate([first, new.T & first], axis=1)


def knn_groups(points: jax.Array, mask: jax.Array, centres: jax.Array, k: int):
  """The `k` nearest valid points of each centre: indices `[b, g, k]` and validity."""
  d = jnp.where(mask.astype(bool)[:, None, :], squared_distances(points, centres), _FAR)
  k = min(k, points.shape[1])
  neg, idx = jax.lax.top_k(-d, k)
  return idx, neg > -_FAR


class PointCloudEmbed(nnx.Module):
  """See the module docstring; `cfg.point_cloud`: groups, group_size, hidden."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    pc = cfg.point_cloud
    self.groups, self.group_size = int(pc.groups), int(pc.group_size)
    axes_in, axes_out = (None, 'mlp'), ('mlp', 'embed')
    self.point1 = Dense(3, pc.hidden, axes_in, rngs=rngs, dtype=dtype)
    self.point2 = Dense(pc.hidden, cfg.width, axes_out, rngs=rngs, dtype=dtype)
    self.pos1 = Dense(3, pc.hidden, axes_in, rngs=rngs, dtype=dtype)
    self.pos2 = Dense(pc.hidden, cfg.width, axes_out, rngs=rngs, dtype=dtype)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None):
    b, n = x.shape[:2]
    if x.shape[-1] != 3:
      raise ValueError(f'point clouds are [batch, points, 3] (2-D sets with z = 0), got '
                       f'{tuple(x.shape)}.')
    mask = jnp.ones((b, n), jnp.int32) if mask is None else jnp.asarray(mask, jnp.int32)
    x = jnp.asarray(x, jnp.float32)
    centre_idx, new = farthest_point_sampling(x, mask, self.groups)
    rows = jnp.arange(b)[:, None]
    centres = x[rows, centre_idx]                                  # [b, g, 3]
    idx, near = knn_groups(x, mask, centres, self.group_size)      # [b, g, k]
    local = x[rows[:, :, None], idx] - centres[:, :, None]         # [b, g, k, 3]
    h = self.point2(jax.nn.gelu(self.point1(local.astype(self.point1.dtype))))
    h = jnp.where(near[..., None], h.astype(jnp.float32), -_FAR).max(axis=2)
    pos = self.pos2(jax.nn.gelu(self.pos1(centres.astype(self.pos1.dtype))))
    tokens = (h + pos.astype(jnp.float32)) * new[..., None]
    return tokens.astype(pos.dtype), new.astype(jnp.int32)
