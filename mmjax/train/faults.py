"""Surviving faults: preemption signals, non-finite losses, and hangs.

- `PreemptionSignal`: SIGTERM/SIGINT set a flag; `poll(step)` tells the loop to finish its step,
  checkpoint, and exit 0. With several processes the flag is agreed every `every` steps through
  JAX's coordination service (a key per signalled process, then a barrier: no device program, so
  ordinary steps stay asynchronous); a second SIGINT aborts. JAX's own preemption sync point is
  not used: it listens through a C++ SIGTERM handler that a Python handler replaces, and it does
  not see SIGINT.
- `NonFiniteGuard`: counts non-finite steps in a row (the step itself already skipped the update)
  and stops the run after `max_in_row`.
- `Watchdog`: when the current phase (restore, compile, a step finishing, evaluation) takes
  longer than its limit, dumps every thread's stack and exits non-zero so the scheduler
  restarts the job.
- `poison_batch`: the debugging key `config.faults.inject_nan_at_steps` puts a NaN into the
  batch of those steps, to rehearse the non-finite path on a real run.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
import time

import jax
import numpy as np

from mmjax.core import modalities
from mmjax.errors import UserError
from mmjax.train import distributed

log = logging.getLogger(__name__)


class TrainingStopped(UserError, RuntimeError):
  """The run stopped on purpose (too many non-finite steps); the message says why."""


class PreemptionSignal:
  """Catches SIGTERM and SIGINT while active; `requested` turns True on the first one."""

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT), every: int = 1):
    self.requested = False
    self.signal_name = None
    self.every = max(int(every), 1)
    self._signals = signals
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the final checkpoint
    self.requested = True
    self.signal_name = signal.Signals(signum).name
    sys.stderr.write(f'\nmmjax: {self.signal_name} received; finishing this step, then '
                     'checkpointing and exiting.\n')

  def poll(self, step: int) -> bool:
    """Whether to stop after step `step`: True once any process has had a signal. Every
    process calls it after every step with the same `step`; with several processes they agree
    on steps divisible by `every` (one coordination-service round trip, no device program) and
    all get the same answer, even when a signal lands while they are agreeing."""
    if jax.process_count() == 1:
      return self.requested
    if step % self.every:
      return False
    seen = self.requested  # one snapshot: the handler may flip the flag at any bytecode
    if not distributed.any_process_flagged(seen, f'preempt_{step}'):
      return False
    if not seen:
      self.requested, self.signal_name = True, 'a signal on another process'
    return True

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for s in self._signals:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, h in self._previous.items():
      signal.signal(s, h)
    return False


class NonFiniteGuard:
  """Counts consecutive steps whose loss or gradient norm was NaN/Inf."""

  def __init__(self, max_in_row: int):
    self.max_in_row = int(max_in_row)
    self.in_row = 0
    self.total = 0

  def update(self, step: int, nonfinite: bool, last_checkpoint: int | None) -> None:
    if not nonfinite:
      self.in_row = 0
      return
    self.in_row += 1
    self.total += 1
    log.warning('step %d: loss or gradient norm is not finite; the update was skipped '
                '(%d in a row, %d in this run).', step, self.in_row, self.total)
    if self.max_in_row and self.in_row >= self.max_in_row:
      where = (f'the last good checkpoint is step {last_checkpoint}' if last_checkpoint
               is not None else 'no checkpoint was written yet')
      raise TrainingStopped(
          f'stopping at step {step}: {self.in_row} steps in a row had a non-finite loss or '
          f'gradient norm (config.faults.max_nonfinite_in_row={self.max_in_row}); {where} — '
          'lower the learning rate or check the data, then run the same command to resume.')


class Watchdog:
  """A daemon thread that kills the process when the current phase overruns its limit.

  `expect(what, seconds)` starts a phase ('restore', 'compile', 'evaluation', ...) with its own
  limit; `beat()` marks progress within the step phase (a finished step) and restarts the clock
  at the step limit. A limit of 0 turns the watchdog off; a phase limit of 0 uses the step one.
  """

  def __init__(self, seconds: float, exit_code: int = 3):
    self.seconds = float(seconds)
    self.exit_code = exit_code
    self._phase, self._limit = 'step', self.seconds
    self._last = time.monotonic()
    self._stop = threading.Event()
    self._thread = None

  def expect(self, what: str, seconds: float) -> None:
    self._phase, self._limit = what, float(seconds) or self.seconds
    self._last = time.monotonic()

  def beat(self) -> None:
    self._phase, self._limit = 'step', self.seconds
    self._last = time.monotonic()

  def _run(self) -> None:
    while not self._stop.wait(min(1.0, self.seconds / 4)):
      phase, limit = self._phase, self._limit
      idle = time.monotonic() - self._last
      if idle > limit:
        what = 'no training step finished' if phase == 'step' else f'{phase} did not finish'
        sys.stderr.write(f'\nmmjax watchdog: {what} within {idle:.0f} s (limit {limit:.0f} s, '
                         'config.faults.watchdog_*); stacks of all threads:\n')
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(self.exit_code)

  def __enter__(self):
    if self.seconds > 0:
      self._last = time.monotonic()
      self._thread = threading.Thread(target=self._run, name='mmjax-watchdog', daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    return False


def poison_batch(batch: dict) -> dict:
  """A copy of `batch` whose first floating-point input has a NaN in its first element, so the
  step's loss is NaN (for `config.faults.inject_nan_at_steps`). Pixels (uint8) and audio (int16)
  hold no NaN: the first of them is sent as float32 instead (the model takes floating inputs as
  normalised; with the NaN the loss is NaN whatever their scale)."""
  for key in sorted(batch):
    value = np.asarray(batch[key])
    if np.issubdtype(value.dtype, np.floating) and value.size:
      value = value.copy()
      value.flat[0] = np.nan
      return {**batch, key: value}
  for key in (m.name for m in modalities.all_records() if m.input.dtype in ('uint8', 'int16')):
    if key in batch and np.asarray(batch[key]).size:
      value = np.asarray(batch[key]).astype(np.float32)
      value.flat[0] = np.nan
      return {**batch, key: value}
  raise ValueError(f'cannot inject a NaN: the batch has no floating-point input (keys '
                   f'{sorted(batch)}); use a task with image, video or audio.')
