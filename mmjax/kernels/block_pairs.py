"""Which (query block, key block) pairs an attention kernel visits, as sorted index tables.

Dense attention visits every pair (or those on/below the diagonal when causal), masked attention
the pairs that padding or segments leave non-empty (`masked_pairs`); routed
attention visits each query block's routed key blocks. The same pairs are listed twice:
sorted by query block (forward and dq kernels) and by key block (dk/dv kernel). Each table has
`rows` = 1 (shared by the whole batch) or `batch` rows; `*_start[r, i]` is where block i's run of
pairs begins, so block i owns pairs `start[r, i] : start[r, i + 1]`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class BlockPairs(NamedTuple):
  q_by_q: jax.Array   # [rows, pairs] query block, ascending
  k_by_q: jax.Array   # [rows, pairs] key block paired with it
  start_q: jax.Array  # [rows, num_q_blocks + 1]
  k_by_k: jax.Array   # [rows, pairs] key block, ascending
  q_by_k: jax.Array   # [rows, pairs]
  start_k: jax.Array  # [rows, num_k_blocks + 1]


def _starts(sorted_blocks, num_blocks):
  return np.searchsorted(sorted_blocks, np.arange(num_blocks + 1), side='left')


def dense_pairs(num_q_blocks: int, num_k_blocks: int, block_q: int, block_k: int,
                causal: bool) -> BlockPairs:
  """All pairs, or with causal only those where some key precedes some query (one shared row)."""
  qi, kj = np.meshgrid(np.arange(num_q_blocks), np.arange(num_k_blocks), indexing='ij')
  keep = (kj * block_k <= qi * block_q + block_q - 1) if causal else np.ones_like(qi, bool)
  q_by_q, k_by_q = qi[keep], kj[keep]                      # row-major: sorted by q
  order = np.lexsort((q_by_q, k_by_q))                      # by k, then q
  k_by_k, q_by_k = k_by_q[order], q_by_q[order]
  arrays = (q_by_q, k_by_q, _starts(q_by_q, num_q_blocks),
            k_by_k, q_by_k, _starts(k_by_k, num_k_blocks))
  return BlockPairs(*(jnp.asarray(a[None], jnp.int32) for a in arrays))


def routed_pairs(routes: jax.Array, num_k_blocks: int) -> BlockPairs:
  """Pairs from routes `[batch, num_q_blocks, top_k]` int32 (distinct key blocks per row)."""
  batch, num_q_blocks, top_k = routes.shape
  q_by_q = jnp.broadcast_to(jnp.repeat(jnp.arange(num_q_blocks, dtype=jnp.int32), top_k),
                            (batch, num_q_blocks * top_k))
  k_by_q = routes.reshape(batch, -1).astype(jnp.int32)
  start_q = jnp.broadcast_to(jnp.arange(num_q_blocks + 1, dtype=jnp.int32) * top_k,
                             (batch, num_q_blocks + 1))
  order = jnp.argsort(k_by_q, axis=1, stable=True)
  k_by_k = jnp.take_along_axis(k_by_q, order, axis=1)
  q_by_k = jnp.take_along_axis(q_by_q, order, axis=1)
  bounds = jnp.arange(num_k_blocks + 1, dtype=jnp.int32)
  start_k = jax.vmap(lambda s: jnp.searchsorted(s, bounds, side='left'))(k_by_k)
  return BlockPairs(q_by_q, k_by_q, start_q, k_by_k, q_by_k, start_k.astype(jnp.int32))


def _sorted_valid(valid):
  """[rows, a, b] bool -> (first, second) `[rows, a * b]` block indices of the valid pairs in
  row-major order, then padding that repeats the last valid pair (pair (0, 0) if none), and
  `start [rows, a + 1]`: first-index runs (padding excluded, so start[:, a] counts the pairs)."""
  rows, a, b = valid.shape
  flat = valid.reshape(rows, a * b)
  order = jnp.argsort(~flat, axis=1, stable=True).astype(jnp.int32)  # valid first, row-major
  count = jnp.sum(flat, axis=1, dtype=jnp.int32)
  idx = jnp.arange(a * b, dtype=jnp.int32)
  last = jnp.take_along_axis(order, jnp.maximum(count - 1, 0)[:, None], axis=1)
  pick = jnp.where(idx[None] < count[:, None], order, last)
  per_first = jnp.sum(valid, axis=2, dtype=jnp.int32)                # [rows, a]
  start = jnp.concatenate([jnp.zeros((rows, 1), jnp.int32), jnp.cumsum(per_first, axis=1)], 1)
  return pick // b, pick % b, start.astype(jnp.int32)


def masked_pairs(valid: jax.Array) -> BlockPairs:
  """Pairs where `valid [rows, num_q_blocks, num_k_blocks]` (some query may see some key): the
  blocks that padding, segments or causality leave empty are not listed, so no kernel visits
  them. Tables keep the static length q_blocks * k_blocks; entries past a row's count
  (`start_q[r, -1]`) repeat its last pair and the kernels skip them."""
  q_by_q, k_by_q, start_q = _sorted_valid(valid)
  k_by_k, q_by_k, start_k = _sorted_valid(jnp.swapaxes(valid, 1, 2))
  return BlockPairs(q_by_q, k_by_q, start_q, k_by_k, q_by_k, start_k)
