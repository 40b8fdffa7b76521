"""Which examples a host reads, in which order, and with which augmentation randomness.

The order is global: epoch `e` visits the whole split in a permutation seeded by `(seed, e)`;
the epochs are concatenated and cut into global batches of `global_batch` examples, so global
batch `j` is a pure function of `(seed, j)` whatever the number of hosts. A host reads its
contiguous slice of rows `[slot * per_host, (slot + 1) * per_host)` of every global batch, so
the iterator state (one integer, the next `j`) is global: it resumes on any number of hosts.

`HostRng` does the same for augmentation: every host draws the random numbers of the whole
global batch from the batch's generator and keeps its rows, so example `i` of global batch `j`
is cropped, flipped and clipped alike on 1 host or 64.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=16)
def _permutation(seed: int, size: int, epoch: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(size)


class GlobalOrder:
  """`order(j)` -> example indices `[per_host]` of this host's slice of global batch `j`."""

  def __init__(self, num_examples: int, global_batch: int, seed: int, slot: int = 0,
               num_slots: int = 1):
    if num_examples <= 0 or global_batch <= 0 or global_batch % num_slots:
      raise ValueError(f'cannot cut {num_examples} examples into global batches of '
                       f'{global_batch} split over {num_slots} hosts.')
    self.num_examples, self.global_batch, self.seed = int(num_examples), int(global_batch), int(seed)
    self.per_host = self.global_batch // num_slots
    self.rows = slice(slot * self.per_host, (slot + 1) * self.per_host)

  def global_indices(self, j: int) -> np.ndarray:
    """Example indices `[global_batch]` (int64) of global batch `j`."""
    positions = int(j) * self.global_batch + np.arange(self.global_batch, dtype=np.int64)
    epochs, within = np.divmod(positions, self.num_examples)
    out = np.empty(self.global_batch, np.int64)
    for epoch in np.unique(epochs):
      here = epochs == epoch
      out[here] = _permutation(self.seed, self.num_examples, int(epoch))[within[here]]
    return out

  def __call__(self, j: int) -> np.ndarray:
    return self.global_indices(j)[self.rows]


class HostRng:
  """A `np.random.Generator` stand-in for one host's rows of a global batch.

  Each draw must be per example (leading dimension = this host's rows): it is drawn for the
  whole global batch from `rng` and this host's rows are returned, so hosts see the same
  numbers for the same example as a single host does.
  """

  def __init__(self, rng: np.random.Generator, global_batch: int, rows: slice):
    self._rng, self._global, self._rows = rng, int(global_batch), rows
    self._local = rows.stop - rows.start

  def generator(self) -> np.random.Generator:
    """The underlying generator, for draws that are not per example of the global batch."""
    return self._rng

  def _size(self, size) -> tuple:
    shape = (size,) if np.isscalar(size) else tuple(size or ())
    if not shape or shape[0] != self._local:
      raise ValueError(f'augmentation draws must be one per example (leading dimension '
                       f'{self._local}), got size {size!r}.')
    return (self._global,) + shape[1:]

  def uniform(self, low=0.0, high=1.0, size=None) -> np.ndarray:
    return self._rng.uniform(low, high, self._size(size))[self._rows]

  def random(self, size=None) -> np.ndarray:
    return self._rng.random(self._size(size))[self._rows]
