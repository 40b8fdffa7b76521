"""What a run shows while it trains: a tqdm bar on a terminal, plain lines everywhere else.

When stdout is not a terminal (a file, a SLURM log, a pipe) bars would run together on one line,
so each compiled task and each log step prints one line instead, e.g.

  step 40/2400  task video_text  loss 2.3121  1210.4 examples/s  ETA 0:03:12

The ETA is (steps left) x (the last window's time per step), which leaves compile, checkpoint
and evaluation time out. Only process 0 shows anything.
"""

from __future__ import annotations

import datetime
import sys

from tqdm import tqdm


def format_eta(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(round(max(seconds, 0.0)))))


def log_line(step: int, total: int, row: dict) -> str:
  """One plain line for a logged metrics row (`task`, `loss`, `examples_per_sec`, `step_time`)."""
  eta = format_eta((total - step) * row.get('step_time', 0.0))
  return (f"step {step}/{total}  task {row['task']}  loss {row['loss']:.4f}  "
          f"{row.get('examples_per_sec', 0.0):.1f} examples/s  ETA {eta}")


class Progress:
  """Train-step progress: `step()` after every step, `logged()` on log steps, then `close()`."""

  def __init__(self, total: int, initial: int, enabled: bool, stream=None):
    self.stream = stream if stream is not None else sys.stdout
    self.enabled = enabled
    self.plain = not self.stream.isatty()
    self.total = total
    self._bar = None
    if enabled and not self.plain:
      self._bar = tqdm(total=total, initial=initial, unit='step', dynamic_ncols=True)

  def step(self, task_name: str, loss: float) -> None:
    if self._bar is not None:
      self._bar.update(1)
      self._bar.set_postfix(task=task_name, loss=f'{loss:.3f}')

  def logged(self, step: int, row: dict) -> None:
    if self.enabled and self.plain:
      print(log_line(step, self.total, row), file=self.stream, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


class CompileProgress:
  """Progress over the ahead-of-time compiles: a bar on a terminal, one line per task otherwise."""

  def __init__(self, total: int, enabled: bool, stream=None):
    self.stream = stream if stream is not None else sys.stdout
    self.enabled, self.total, self.done = enabled, total, 0
    self.plain = not self.stream.isatty()
    self._bar = (tqdm(total=total, desc='compile', unit='task')
                 if enabled and not self.plain else None)

  def __call__(self, task) -> None:
    self.done += 1
    if self._bar is not None:
      self._bar.update(1)
    elif self.enabled:
      name = getattr(task, 'signature_name', getattr(task, 'name', task))
      print(f'compiled {self.done}/{self.total}: {name}', file=self.stream, flush=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self._bar is not None:
      self._bar.close()
