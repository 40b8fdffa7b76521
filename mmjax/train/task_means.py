"""Each task's running mean of its training metrics over one log window.

Under AGD a step runs one task, so the row logged at step N would otherwise carry only the
metrics of the task that ran at step N. Every log row instead carries, for every task that ran
in the window since the previous row, `tasks/<task>/<metric>` = the mean of that metric over the
task's steps in the window (and `tasks/<task>/window_steps`, how many there were).
"""

from __future__ import annotations

# Whole-run quantities, not a property of the task that ran.
NOT_PER_TASK = ('learning_rate',)


class TaskWindowMeans:
  """Accumulates `{metric: value}` per task; `rows()` gives the means, keyed for metrics.jsonl."""

  def __init__(self):
    self._sums: dict[str, dict[str, float]] = {}
    self._counts: dict[str, dict[str, int]] = {}
    self._steps: dict[str, int] = {}

  def add(self, task: str, values: dict) -> None:
    sums = self._sums.setdefault(task, {})
    counts = self._counts.setdefault(task, {})
    self._steps[task] = self._steps.get(task, 0) + 1
    for key, value in values.items():
      if key in NOT_PER_TASK:
        continue
      sums[key] = sums.get(key, 0.0) + float(value)
      counts[key] = counts.get(key, 0) + 1

  def rows(self) -> dict:
    out = {}
    for task in sorted(self._sums):
      for key in sorted(self._sums[task]):
        out[f'tasks/{task}/{key}'] = self._sums[task][key] / self._counts[task][key]
      out[f'tasks/{task}/window_steps'] = self._steps[task]
    return out
