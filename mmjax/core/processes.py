"""Cross-process agreement: whether a flag holds on every process, or on some process.

Both are collectives (every process must call them); one process is answered directly.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils


def _flags_of_all_processes(flag: bool) -> np.ndarray:
  return np.asarray(multihost_utils.process_allgather(np.asarray(bool(flag))))


def all_processes(flag: bool) -> bool:
  """True when `flag` is True on every process (a collective: every process must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.all(_flags_of_all_processes(flag)))


def any_process(flag: bool) -> bool:
  """True when `flag` is True on some process (a collective: every process must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.any(_flags_of_all_processes(flag)))
