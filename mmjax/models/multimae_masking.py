"""MultiMAE's visible-token budget: per example, `budget` visible tokens are split across the
task's modalities by Dirichlet-sampled shares, and each modality shows that many of its tokens,
chosen uniformly at random. Used by the MultiMAE task kind (`multimae.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def split_visible_budget(rng, num_tokens: dict[str, int], budget: int, alpha: float,
                         batch: int) -> dict[str, jax.Array]:
  """Visible tokens per modality, `{modality: int32 [batch]}`.

  Shares ~ Dirichlet(alpha, .., alpha) per example; `shares * budget` is rounded by largest
  remainder so the counts sum to `budget` exactly, then each is capped at the modality's
  `num_tokens` (so an example sums to less only when a modality cannot hold its share).
  """
  mods = list(num_tokens)
  if not 0 < budget <= sum(num_tokens.values()):
    raise ValueError(f'visible-token budget {budget} must be in 1..{sum(num_tokens.values())} '
                     f'(the tokens of {mods}).')
  shares = jax.random.dirichlet(rng, jnp.full((len(mods),), float(alpha)), (batch,))  # [b, M]
  raw = shares * budget
  counts = jnp.floor(raw).astype(jnp.int32)
  short = budget - counts.sum(-1, keepdims=True)                                   # [b, 1]
  rank = jnp.argsort(jnp.argsort(-(raw - counts), axis=-1), axis=-1)               # 0 = largest
  counts = counts + (rank < short).astype(jnp.int32)
  caps = jnp.asarray([num_tokens[m] for m in mods], jnp.int32)
  counts = jnp.minimum(counts, caps)
  return {m: counts[:, i] for i, m in enumerate(mods)}


def visible_mask(rng, visible: jax.Array, num_tokens: int) -> jax.Array:
  """`visible [batch]` counts -> int32 mask `[batch, num_tokens]` with exactly `visible[i]` ones
  in row i, at uniformly random positions (1 = shown to the encoder, 0 = to reconstruct)."""
  noise = jax.random.uniform(rng, (visible.shape[0], num_tokens))
  rank = jnp.argsort(jnp.argsort(noise, axis=-1), axis=-1)
  return (rank < visible[:, None]).astype(jnp.int32)
