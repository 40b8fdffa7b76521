"""Surviving faults: preemption signals, non-finite losses, and hangs.

- `PreemptionSignal`: SIGTERM/SIGINT set a flag; `poll()` (once per step, agreed by all
  processes) tells the loop to finish its step, checkpoint, and exit 0. A second SIGINT aborts.
- `NonFiniteGuard`: counts non-finite steps in a row (the step itself already skipped the update)
  and stops the run after `max_in_row`.
- `Watchdog`: when no step finishes within `seconds`, dumps every thread's stack and exits
  non-zero so the scheduler restarts the job.
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

import numpy as np

log = logging.getLogger(__name__)


class TrainingStopped(RuntimeError):
  """The run stopped on purpose (too many non-finite steps); the message says why."""


class PreemptionSignal:
  """Catches SIGTERM and SIGINT while active; `requested` turns True on the first one."""

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
    self.requested = False
    self.signal_name = None
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

  def poll(self) -> bool:
    """Whether to stop after this step: True once any process has had a signal. Call it once
    per step on every process (it is a collective when there are several); all processes get
    the same answer, even when a signal lands while they are agreeing."""
    from mmjax.train import distributed
    seen = self.requested  # one snapshot: the handler may flip the flag at any bytecode
    if not distributed.any_process(seen):
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
  """A daemon thread that kills the process when `beat()` is not called for `seconds`."""

  def __init__(self, seconds: float, exit_code: int = 3):
    self.seconds = float(seconds)
    self.exit_code = exit_code
    self._last = time.monotonic()
    self._stop = threading.Event()
    self._thread = None

  def beat(self) -> None:
    self._last = time.monotonic()

  def _run(self) -> None:
    while not self._stop.wait(min(1.0, self.seconds / 4)):
      idle = time.monotonic() - self._last
      if idle > self.seconds:
        sys.stderr.write(f'\nmmjax watchdog: no training step finished for {idle:.0f} s '
                         f'(limit {self.seconds:.0f} s); stacks of all threads:\n')
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(self.exit_code)

  def __enter__(self):
    if self.seconds > 0:
      self.beat()
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
  for key in ('image', 'video', 'audio'):
    if key in batch and np.asarray(batch[key]).size:
      value = np.asarray(batch[key]).astype(np.float32)
      value.flat[0] = np.nan
      return {**batch, key: value}
  raise ValueError(f'cannot inject a NaN: the batch has no floating-point input (keys '
                   f'{sorted(batch)}); use a task with image, video or audio.')
