"""Goodput: where a job's wall time went, across every attempt, each from its process start.

A stopwatch with one current category: `switch(category)` books the time since the last switch
to the category that was running and starts the next one, so every second lands in exactly one
category and they add up to the wall time. The loop books productive steps, the wait for input,
checkpoint saves, evaluation, and — after a restart — the steps it computes a second time
(`lost`: done before the restart, after its last checkpoint). Start-up (from the process start:
imports, preflight, data set-up, a fresh initialisation), `restore` and `compile` are their own.

The ledger is job-level: once the run holds its workdir (`attach`), process 0 keeps this
attempt's seconds in `WORKDIR/goodput/<attempt>.json` (rewritten at most every few seconds, at
each switch that falls due, and at the end: one small file, O(1) on object stores too), and
`summary`/`rows`/`table` add every earlier attempt's file, a killed one included (up to its
last write). `python -m tools.goodput --workdir=DIR` prints the job's table.
"""

from __future__ import annotations

import json
import os
import socket
import time

import jax

from mmjax import paths

CATEGORIES = ('productive', 'lost', 'input_wait', 'compile', 'restore', 'checkpoint',
              'evaluation', 'startup')
LEDGER_DIR = 'goodput'


def process_start_time() -> float:
  """This process's start as a Unix time (Linux /proc; else the time this module loaded)."""
  try:
    with open('/proc/self/stat') as f:
      ticks = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/stat') as f:
      boot = next(int(line.split()[1]) for line in f if line.startswith('btime'))
    return boot + ticks / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError, IndexError, StopIteration):
    return _LOADED


_LOADED = time.time()


def _zero() -> dict[str, float]:
  return {c: 0.0 for c in CATEGORIES}


def read_attempts(workdir: str) -> list[dict]:
  """Every attempt's record under `workdir/goodput/`, oldest first (unreadable ones skipped)."""
  directory = paths.join(workdir, LEDGER_DIR)
  if not paths.exists(directory):
    return []
  out = []
  for name in paths.listdir(directory):
    if not name.endswith('.json'):
      continue
    try:
      out.append(json.loads(paths.read_text(paths.join(directory, name))))
    except (OSError, ValueError):
      continue
  return sorted(out, key=lambda r: r.get('start', 0))


def summarize(seconds: dict[str, float], attempts: int = 1) -> dict[str, float]:
  total = sum(seconds[c] for c in CATEGORIES)
  return {**seconds, 'total': total, 'attempts': attempts,
          'fraction': seconds['productive'] / total if total else 0.0}


def job_summary(workdir: str) -> dict[str, float]:
  """The job's seconds per category, total, fraction and number of attempts, from the files."""
  seconds = _zero()
  records = read_attempts(workdir)
  for r in records:
    for c in CATEGORIES:
      seconds[c] += float(r.get('seconds', {}).get(c, 0.0))
  return summarize(seconds, len(records))


def format_table(s: dict[str, float]) -> str:
  """A plain-text table: category, seconds, share of the wall time."""
  total = max(s['total'], 1e-12)
  attempts = int(s.get('attempts', 1))
  across = f' across {attempts} attempts' if attempts > 1 else ''
  lines = [f'goodput {100 * s["fraction"]:.1f}% of {s["total"]:.1f} s wall time{across}',
           f'  {"category":<12}{"seconds":>10}{"share":>9}']
  for c in CATEGORIES:
    lines.append(f'  {c:<12}{s[c]:>10.1f}{100 * s[c] / total:>8.1f}%')
  return '\n'.join(lines)


class Goodput:
  """Wall-time ledger; `fraction` = productive seconds / all seconds (of the job once attached).

  With the default clock (Unix time) the ledger starts at the process start; a given clock
  starts it at its first reading."""

  def __init__(self, clock=None, *, start: float | None = None, flush_every: float | None = None):
    self._clock = clock or time.time
    if start is None:
      start = process_start_time() if clock is None else self._clock()
    self._start = self._last = start
    self._current = 'startup'
    self.seconds = _zero()
    self._file = None
    self._earlier: list[dict] = []
    self._flush_every = flush_every
    self._flushed = None

  def attach(self, workdir: str, write: bool | None = None) -> None:
    """Makes the ledger the job's: earlier attempts' records count, and (on process 0, or
    `write`) this attempt's is kept in `workdir/goodput/`."""
    if write is None:
      write = jax.process_index() == 0
    self._earlier = read_attempts(workdir)
    if not write:
      return
    directory = paths.join(paths.resolve(workdir), LEDGER_DIR)
    paths.makedirs(directory)
    attempt = f'{int(self._start * 1000):015d}-{socket.gethostname()}-{os.getpid()}'
    self._file = paths.join(directory, f'{attempt}.json')
    if self._flush_every is None:
      self._flush_every = 30.0 if paths.is_remote(workdir) else 1.0
    self.flush()

  def switch(self, category: str) -> None:
    """Books the time since the last switch to the running category; `category` runs next."""
    if category not in self.seconds:
      raise ValueError(f'unknown goodput category {category!r}; one of {CATEGORIES}.')
    now = self._clock()
    self.seconds[self._current] += now - self._last
    self._current, self._last = category, now
    if self._file is not None and now - self._flushed >= self._flush_every:
      self.flush()

  def _attempt_seconds(self) -> dict[str, float]:
    seconds = dict(self.seconds)
    seconds[self._current] += self._clock() - self._last
    return seconds

  def flush(self) -> None:
    """Writes this attempt's record (process 0, once attached)."""
    if self._file is None:
      return
    now = self._clock()
    paths.write_text(self._file, json.dumps({
        'start': self._start, 'end': now, 'host': socket.gethostname(), 'pid': os.getpid(),
        'seconds': self._attempt_seconds()}))
    self._flushed = now

  def attempt_summary(self) -> dict[str, float]:
    """This attempt alone."""
    return summarize(self._attempt_seconds())

  def summary(self) -> dict[str, float]:
    """Seconds per category over the job (earlier attempts and this one, the running category
    included up to now), total, goodput fraction and number of attempts."""
    seconds = self._attempt_seconds()
    for r in self._earlier:
      for c in CATEGORIES:
        seconds[c] += float(r.get('seconds', {}).get(c, 0.0))
    return summarize(seconds, len(self._earlier) + 1)

  def rows(self) -> dict[str, float]:
    """`{'goodput/<category>_s': seconds, 'goodput/total_s', 'goodput/fraction',
    'goodput/attempts'}` of the job for metrics (and this attempt's record is written)."""
    self.flush()
    s = self.summary()
    out = {f'goodput/{c}_s': s[c] for c in CATEGORIES}
    out.update({'goodput/total_s': s['total'], 'goodput/fraction': s['fraction'],
                'goodput/attempts': s['attempts']})
    return out

  def table(self) -> str:
    return format_table(self.summary())


def redone_until(previous_rows: list[dict], resume_step: int) -> int:
  """The last step a previous run logged (past `resume_step` it is computed again), from
  metrics.jsonl rows; `resume_step` when there is none."""
  steps = [int(r['step']) for r in previous_rows if 'loss' in r and 'step' in r]
  return max([resume_step] + steps)
