"""4M's token budgets: per example, a budget of tokens split over modalities by Dirichlet shares,
each modality's share drawn uniformly among its available tokens (`fourm.py` draws the inputs
first, then the targets among the tokens that are not inputs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def split_budget(rng, available: jax.Array, budget: int, alpha: float) -> jax.Array:
  """`available [b, M]` tokens per modality -> int32 counts `[b, M]`.

  Shares ~ Dirichlet(alpha, .., alpha) per example; `shares * budget` rounded by largest
  remainder sums to `budget` exactly; a count above what its modality has is cut to it and the
  tokens it could not take go, once, to the other modalities with room (largest share first).
  An example sums to `min(budget, available total)` whenever one redistribution suffices.
  """
  b, mods = available.shape
  shares = jax.random.dirichlet(rng, jnp.full((mods,), float(alpha)), (b,))   # [b, M]
  raw = shares * budget
  counts = jnp.floor(raw).astype(jnp.int32)
  short = budget - counts.sum(-1, keepdims=True)
  rank = jnp.argsort(jnp.argsort(-(raw - counts), axis=-1), axis=-1)           # 0 = largest
  counts = counts + (rank < short).astype(jnp.int32)
  avail = available.astype(jnp.int32)
  capped = jnp.minimum(counts, avail)
  spill = (counts - capped).sum(-1, keepdims=True)                              # [b, 1]
  room = avail - capped
  order = jnp.argsort(-shares, axis=-1)                                         # by share
  room_sorted = jnp.take_along_axis(room, order, axis=-1)
  before = jnp.cumsum(room_sorted, axis=-1) - room_sorted
  give_sorted = jnp.clip(spill - before, 0, room_sorted)
  give = jnp.zeros_like(give_sorted).at[jnp.arange(b)[:, None], order].set(give_sorted)
  return capped + give


def choose_tokens(rng, available: jax.Array, count: jax.Array) -> jax.Array:
  """`available [b, n]` (1 = may be chosen), `count [b]` -> int32 `[b, n]` with exactly
  `min(count, available)` ones per row, at uniformly random available positions."""
  noise = jax.random.uniform(rng, available.shape) + 2.0 * (available == 0)
  rank = jnp.argsort(jnp.argsort(noise, axis=-1), axis=-1)
  return ((rank < count[:, None]) & (available > 0)).astype(jnp.int32)
