"""Which key blocks a query block can see at all, from per-example lengths and segment ids.

A (query block, key block) pair is empty when no query of the block may attend any key of the
other: every token of one is padding (past the example's length), their segment-id ranges do
not overlap, or (causal) every key comes after every query. Flash attention lists only the
non-empty pairs (`block_pairs.masked_pairs`), so it never loads or multiplies the empty ones.
The range test is exact for packed sequences (ids non-decreasing along the sequence) and
conservative otherwise: a pair it keeps may still be fully masked inside the kernel, which then
gives the same result as skipping it.
"""

import jax.numpy as jnp

# Segment ids the kernels see at padding past an example's length: they match nothing.
Q_PAD, K_PAD = jnp.iinfo(jnp.int32).min, jnp.iinfo(jnp.int32).min + 1


def _block_ranges(seg, real, block):
  """Per block: (any real token, min and max segment id over its real tokens)."""
  batch, length = seg.shape
  seg, real = seg.reshape(batch, length // block, block), real.reshape(batch, -1, block)
  big = jnp.iinfo(jnp.int32).max
  lo = jnp.min(jnp.where(real, seg, big), axis=2)
  hi = jnp.max(jnp.where(real, seg, -big), axis=2)
  return jnp.any(real, axis=2), lo, hi


def valid_blocks(seg, real, block_q, block_k, causal):
  """`valid [batch, q_blocks, k_blocks]` bool for padded `seg [batch, length]` int32 (one
  length for queries and keys) and `real [batch, length]` bool (False = padding)."""
  q_any, q_lo, q_hi = _block_ranges(seg, real, block_q)
  k_any, k_lo, k_hi = _block_ranges(seg, real, block_k)
  valid = (q_any[:, :, None] & k_any[:, None, :]
           & (q_lo[:, :, None] <= k_hi[:, None, :]) & (k_lo[:, None, :] <= q_hi[:, :, None]))
  if causal:
    qi = jnp.arange(q_any.shape[1])[:, None]
    kj = jnp.arange(k_any.shape[1])[None, :]
    valid &= (kj * block_k <= qi * block_q + block_q - 1)[None]
  return valid


def masked_segments(segment_ids, lengths, batch, length, padded):
  """(q_seg, k_seg, real) `[batch, padded]` int32/int32/bool: the user's segment ids (0 when
  None) with queries past `lengths [batch]` (None = all real) set to Q_PAD and keys to K_PAD,
  and the block-padding tail (positions >= length) likewise."""
  seg = (jnp.zeros((batch, length), jnp.int32) if segment_ids is None
         else segment_ids.astype(jnp.int32))
  seg = jnp.pad(seg, ((0, 0), (0, padded - length)))
  pos = jnp.arange(padded)[None]
  real = pos < (length if lengths is None else jnp.minimum(lengths.astype(jnp.int32),
                                                           length)[:, None])
  real = jnp.broadcast_to(real, (batch, padded))
  return jnp.where(real, seg, Q_PAD), jnp.where(real, seg, K_PAD), real
