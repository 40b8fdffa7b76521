"""Which examples a host reads, and in which order.

A host owns the shard `process_index::process_count` of the split (shards are disjoint and cover
it). Each epoch visits its shard in a fresh permutation seeded by `(seed, epoch)`; the epochs are
concatenated and cut into batches, so batch `j` is a pure function of `(seed, j)`: that is what
makes the train iterator's state (one integer) resume exactly.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=16)
def _permutation(seed: int, size: int, epoch: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(size)


class EpochOrder:
  """`order(j)` -> example indices `[batch_size]` of this host's batch `j` (int64)."""

  def __init__(self, num_examples: int, batch_size: int, seed: int, process_index: int = 0,
               process_count: int = 1):
    self.shard = np.arange(process_index, num_examples, process_count, dtype=np.int64)
    if not len(self.shard) or batch_size <= 0:
      raise ValueError(f'host {process_index} of {process_count} has no examples to read.')
    self.batch_size, self.seed = int(batch_size), int(seed)

  def __call__(self, j: int) -> np.ndarray:
    positions = int(j) * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
    epochs, within = np.divmod(positions, len(self.shard))
    out = np.empty(self.batch_size, np.int64)
    for epoch in np.unique(epochs):
      here = epochs == epoch
      out[here] = self.shard[_permutation(self.seed, len(self.shard), int(epoch))[within[here]]]
    return out
