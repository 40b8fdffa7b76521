"""Pure routing functions for Mixture-of-Experts layers (one routing group at a time).

All take router `logits [tokens, experts]`; probabilities are a float32 softmax over experts
(last axis); ties go to the lower index. Nothing here builds a `[tokens, experts, capacity]`
one-hot: buffer positions come from a stable sort, so memory is linear in tokens.

An optional `mask [tokens]` (1 = real token) keeps padding out: padding claims no capacity,
gets combine weight 0, and is left out of losses and statistics.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def expert_capacity(tokens: int, num_experts: int, top_k: int, capacity_factor: float,
                    min_capacity: int = 1) -> int:
  """Slots per expert: `ceil(capacity_factor * tokens * top_k / num_experts)`, at least
  `min_capacity` and 1."""
  return max(1, int(min_capacity), math.ceil(capacity_factor * tokens * top_k / num_experts))


def router_probs(logits: jax.Array) -> jax.Array:
  """Softmax over experts in float32: `[tokens, experts]`."""
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def _weights(mask, n: int) -> jax.Array:
  return jnp.ones((n,), jnp.float32) if mask is None else (mask > 0).astype(jnp.float32)


def slot_positions(expert_seq: jax.Array, num_experts: int) -> jax.Array:
  """`expert_seq [n]` (value `num_experts` = not routed) -> `[n]` int32: how many earlier
  entries chose the same expert, i.e. each entry's slot in its expert's buffer."""
  n = expert_seq.shape[0]
  order = jnp.argsort(expert_seq, stable=True)
  counts = jnp.zeros((num_experts + 1,), jnp.int32).at[expert_seq].add(1)
  starts = jnp.cumsum(counts) - counts
  ranks = jnp.arange(n, dtype=jnp.int32) - starts[expert_seq[order]]
  return jnp.zeros((n,), jnp.int32).at[order].set(ranks)


def route_tokens_choose(logits: jax.Array, top_k: int, capacity: int, *, mask=None,
                        batch_prioritized: bool = False):
  """Each token picks its `top_k` experts; an expert keeps the first `capacity` claims.

  Claims are made choice by choice (all first choices, then all second choices, ...), within a
  choice in token order, or, with `batch_prioritized`, in order of the token's top router
  probability (highest first, ties: lower token index). Returns `expert_index [tokens, top_k]`
  int32 (the router's choices, also where dropped), `combine_weights [tokens, top_k]` float32
  (softmax probability, 0 where dropped), `position [tokens, top_k]` int32 (slot in the
  expert's buffer, -1 where dropped).
  """
  tokens, experts = logits.shape
  if not 1 <= top_k <= experts:
    raise ValueError(f'top_k={top_k} must be between 1 and the number of experts {experts}.')
  probs = router_probs(logits)
  weights, index = jax.lax.top_k(probs, top_k)                      # [tokens, top_k]
  real = _weights(mask, tokens) > 0
  if batch_prioritized:
    order = jnp.argsort(-weights[:, 0], stable=True)
  else:
    order = jnp.arange(tokens)
  claims = jnp.where(real[order][:, None], index[order], experts)   # [tokens, top_k] in order
  pos = slot_positions(claims.T.reshape(-1), experts).reshape(top_k, tokens).T
  pos = jnp.zeros((tokens, top_k), jnp.int32).at[order].set(pos)
  keep = real[:, None] & (pos < capacity)
  return (index.astype(jnp.int32), jnp.where(keep, weights, 0.0),
          jnp.where(keep, pos, -1).astype(jnp.int32))


def route_experts_choose(logits: jax.Array, capacity: int, *, mask=None):
  """Each expert takes the `capacity` tokens with the highest probability for it.

  Returns `token_index [experts, capacity]` int32 (highest probability first, ties: lower
  token index) and `combine_weights [experts, capacity]` float32 (those probabilities; 0 for a
  padding token, which is only taken when fewer than `capacity` real tokens remain).
  """
  tokens = logits.shape[0]
  if not 1 <= capacity <= tokens:
    raise ValueError(f'expert-choice capacity {capacity} must be between 1 and the {tokens} '
                     'tokens of the routing group.')
  scores = router_probs(logits).T                                    # [experts, tokens]
  if mask is not None:
    scores = jnp.where(mask[None] > 0, scores, -1.0)
  top, token_index = jax.lax.top_k(scores, capacity)
  return token_index.astype(jnp.int32), jnp.maximum(top, 0.0)


def load_balancing_loss(router_probs: jax.Array, expert_index: jax.Array, mask=None) -> jax.Array:
  """Switch Transformer: `experts * sum_e f_e * P_e`; 1.0 when perfectly balanced.

  `router_probs [tokens, experts]`, `expert_index [tokens]` or `[tokens, top_k]` (the router's
  choices before capacity). `f_e` is the fraction of all token-slots (every one of the top_k
  choices counts) assigned to expert e, so sum_e f_e = 1 for any top_k; `P_e` is the mean
  router probability of e. Both are means over real tokens.
  """
  experts = router_probs.shape[-1]
  idx = expert_index.reshape(expert_index.shape[0], -1)
  w = _weights(mask, router_probs.shape[0])
  slots = jnp.zeros((experts,), jnp.float32).at[idx].add(jnp.broadcast_to(w[:, None], idx.shape))
  f = slots / jnp.maximum(w.sum() * idx.shape[1], 1.0)
  p = (router_probs.astype(jnp.float32) * w[:, None]).sum(0) / jnp.maximum(w.sum(), 1.0)
  return experts * jnp.sum(f * p)


def router_z_loss(logits: jax.Array, mask=None) -> jax.Array:
  """ST-MoE router z-loss: mean over tokens of `logsumexp(logits)^2`."""
  z = jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)
  w = _weights(mask, logits.shape[0])
  return jnp.sum(w * z * z) / jnp.maximum(w.sum(), 1.0)


def router_entropy(router_probs: jax.Array, mask=None) -> jax.Array:
  """Mean over real tokens of the routing distribution's entropy (nats)."""
  p = router_probs.astype(jnp.float32)
  h = -jnp.sum(p * jnp.log(jnp.maximum(p, 1e-30)), axis=-1)
  w = _weights(mask, p.shape[0])
  return jnp.sum(w * h) / jnp.maximum(w.sum(), 1.0)
