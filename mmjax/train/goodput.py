"""Goodput: where a run's wall time went, from the start of `train()` to its end.

A stopwatch with one current category: `switch(category)` books the time since the last switch
to the category that was running and starts the next one, so every second lands in exactly one
category and they add up to the wall time. The loop books productive steps, the wait for input,
checkpoint saves, evaluation, and — after a restart — the steps it computes a second time
(`lost`: done before the restart, after its last checkpoint). Start-up is preflight, data
set-up and a fresh initialisation; `restore` and `compile` are their own.
"""

from __future__ import annotations

import time

CATEGORIES = ('productive', 'lost', 'input_wait', 'compile', 'restore', 'checkpoint',
              'evaluation', 'startup')


class Goodput:
  """Wall-time ledger; `fraction` = productive seconds / all seconds."""

  def __init__(self, clock=time.perf_counter):
    self._clock = clock
    self._start = self._last = clock()
    self._current = 'startup'
    self.seconds = {c: 0.0 for c in CATEGORIES}

  def switch(self, category: str) -> None:
    """Books the time since the last switch to the running category; `category` runs next."""
    if category not in self.seconds:
      raise ValueError(f'unknown goodput category {category!r}; one of {CATEGORIES}.')
    now = self._clock()
    self.seconds[self._current] += now - self._last
    self._current, self._last = category, now

  def summary(self) -> dict[str, float]:
    """Seconds per category (the running one included up to now), total and goodput fraction."""
    seconds = dict(self.seconds)
    seconds[self._current] += self._clock() - self._last
    total = sum(seconds.values())
    return {**seconds, 'total': total, 'fraction': seconds['productive'] / total if total else 0.0}

  def rows(self) -> dict[str, float]:
    """`{'goodput/<category>_s': seconds, 'goodput/total_s', 'goodput/fraction'}` for metrics."""
    s = self.summary()
    out = {f'goodput/{c}_s': s[c] for c in CATEGORIES}
    out.update({'goodput/total_s': s['total'], 'goodput/fraction': s['fraction']})
    return out

  def table(self) -> str:
    """A plain-text table: category, seconds, share of the wall time."""
    s = self.summary()
    total = max(s['total'], 1e-12)
    lines = [f'goodput {100 * s["fraction"]:.1f}% of {s["total"]:.1f} s wall time',
             f'  {"category":<12}{"seconds":>10}{"share":>9}']
    for c in CATEGORIES:
      lines.append(f'  {c:<12}{s[c]:>10.1f}{100 * s[c] / total:>8.1f}%')
    return '\n'.join(lines)


def redone_until(previous_rows: list[dict], resume_step: int) -> int:
  """The last step a previous run logged (past `resume_step` it is computed again), from
  metrics.jsonl rows; `resume_step` when there is none."""
  steps = [int(r['step']) for r in previous_rows if 'loss' in r and 'step' in r]
  return max([resume_step] + steps)
