"""MaskGIT-style iterative parallel decoding of a grid of discrete tokens (4M generation).

All `n` positions start unknown. At step s of `steps`, every unknown position gets a sampled
token and its confidence (log-probability + annealed Gumbel noise); the cosine schedule says how
many stay unknown afterwards, `floor(n * cos(pi/2 * (s + 1) / steps))` (made strictly
decreasing, 0 after the last step), and the least confident re-masked, the rest fixed for good.
So every position is filled in exactly `steps` steps.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def cosine_schedule(n: int, steps: int) -> list[int]:
  """Unknown positions left after each of the `steps` steps (strictly decreasing, last 0)."""
  if not 1 <= steps <= n:
    raise ValueError(f'MaskGIT needs 1..{n} steps for {n} positions, got {steps}.')
  left, prev = [], n
  for s in range(steps):
    k = int(math.floor(n * math.cos(math.pi / 2 * (s + 1) / steps)))
    k = min(k, prev - 1, n - (s + 1))          # at least one position per step
    k = max(k, steps - (s + 1))                # and one left for each later step
    left.append(k)
    prev = k
  return left


def decode(predict, batch: int, n: int, steps: int, rng, *, temperature: float = 1.0,
           choice_temperature: float = 4.5):
  """`predict(ids [b, n] int32, known [b, n] int32) -> logits [b, n, V]` -> (ids `[b, n]`,
  known counts after each step `[steps, b]`). `temperature` 0 takes the argmax."""
  ids = jnp.zeros((batch, n), jnp.int32)
  known = jnp.zeros((batch, n), jnp.int32)
  history = []
  for s, left in enumerate(cosine_schedule(n, steps)):
    logits = predict(ids, known).astype(jnp.float32)
    k1, k2 = jax.random.split(jax.random.fold_in(rng, s))
    if temperature > 0:
      sample = jax.random.categorical(k1, logits / temperature, axis=-1).astype(jnp.int32)
    else:
      sample = jnp.argmax(logits, -1).astype(jnp.int32)
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), sample[..., None], -1)[..., 0]
    anneal = choice_temperature * (1.0 - (s + 1) / steps)
    conf = logp + anneal * jax.random.gumbel(k2, logp.shape)
    conf = jnp.where(known > 0, jnp.inf, conf)           # known positions are never re-masked
    rank = jnp.argsort(jnp.argsort(conf, axis=-1), axis=-1)   # 0 = least confident
    fill = (rank >= left) & (known == 0)
    ids = jnp.where(fill, sample, ids)
    known = jnp.maximum(known, fill.astype(jnp.int32))
    history.append(np.asarray(known.sum(-1)))
  return ids, np.stack(history)
