"""Training curves from `metrics.jsonl`: one figure per metric in `DIR/plots/<metric>.png`.

Written by the training loop when it checkpoints (`CheckpointPlots`) and by `python -m tools.plot_metrics`,
on any file system (`gs://` workdirs too, through mmjax/paths.py). A metric
whose values are all zero (MoE losses of a dense model, `nonfinite` of a healthy run) is not
drawn. Uses matplotlib's object API with the Agg canvas (`Figure.savefig`), never pyplot, so
no global backend state is touched and it runs headless.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from mmjax import paths as paths_lib
from mmjax.train.metrics_writer import last_rows, metrics_exist, metrics_lines

# Whole-run quantities: one curve, not split by the task of the logged step.
GLOBAL_KEYS = ('learning_rate', 'examples_per_sec', 'step_time', 'input_wait_fraction')


def _file_name(metric: str) -> str:
  return re.sub(r'[^A-Za-z0-9._-]+', '_', str(metric)).strip('_') or 'unnamed'


def read_metrics(path: str) -> list[dict]:
  """Records of a `metrics.jsonl` log (with its segments on object stores; any file system),
  each step's last row (a resumed run appends the steps it redoes); a truncated last line (run
  still writing) is skipped."""
  if not metrics_exist(path):
    raise FileNotFoundError(f'no metrics file at {path}: point --workdir at a training run.')
  lines = metrics_lines(path)
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:
        break
      raise ValueError(f'{path} line {i + 1} is not valid JSON ({e.msg}).') from None
  return last_rows(records)


def _series(records: Sequence[dict]) -> dict[str, dict[str, tuple[list, list]]]:
  """{metric: {task: (steps, values)}} over every finite numeric value of the records.

  A key `tasks/<task>/<metric>` (the task's mean over the log window; metric names may hold '/')
  is `<metric>` of `<task>`; a plain key is the value at the logged step of the record's `task`
  (or of 'all' for `GLOBAL_KEYS`) and is used only where the record has no window mean for it.
  A (metric, task, step) seen twice is kept once.
  """
  out: dict[str, dict[str, tuple[list, list]]] = {}
  seen = set()
  for r in records:
    if 'step' not in r:
      continue
    items = sorted(r.items(), key=lambda kv: not kv[0].startswith('tasks/'))  # means first
    for key, value in items:
      if key in ('step', 'task') or isinstance(value, bool) or not isinstance(value, (int, float)):
        continue
      if not math.isfinite(value):
        continue
      if key.startswith('tasks/') and key.count('/') >= 2:
        task, metric = key[len('tasks/'):].split('/', 1)
      else:
        task, metric = ('all' if key in GLOBAL_KEYS else str(r.get('task', 'all'))), key
      if (metric, task, r['step']) in seen:
        continue
      seen.add((metric, task, r['step']))
      steps, values = out.setdefault(metric, {}).setdefault(task, ([], []))
      steps.append(r['step'])
      values.append(value)
  return out


def plot_metrics(records: Sequence[dict], out_dir: str) -> list[str]:
  """One figure per numeric metric that is not all zero (`<metric>.png` in `out_dir`), one
  curve per task (any file system: written through the path layer)."""
  paths_lib.makedirs(out_dir)
  paths = []
  for key, by_task in sorted(_series(records).items()):
    if all(v == 0 for _, vs in by_task.values() for v in vs):
      continue
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for task, (steps, values) in sorted(by_task.items()):
      order = np.argsort(steps, kind='stable')
      ax.plot(np.asarray(steps)[order], np.asarray(values)[order], label=task,
              marker='.' if len(steps) < 20 else None)
    positive = all(v > 0 for _, vs in by_task.values() for v in vs)
    if key == 'loss' and positive:
      ax.set_yscale('log')
    ax.set_xlabel('step')
    ax.set_ylabel(key)
    ax.set_title(key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = paths_lib.join(out_dir, f'{_file_name(key)}.png')
    with paths_lib.open_file(path, 'wb') as f:
      fig.savefig(f, dpi=100, format='png')
    paths.append(path)
  return paths


def plot_workdir(workdir: str) -> list[str]:
  """Curves of `workdir/metrics.jsonl` into `workdir/plots/`; returns the files written."""
  records = read_metrics(paths_lib.join(workdir, 'metrics.jsonl'))
  if not records:
    raise ValueError(f'{paths_lib.join(workdir, "metrics.jsonl")} holds no records yet.')
  return plot_metrics(records, paths_lib.join(workdir, 'plots'))


class CheckpointPlots:
  """Redraws `DIR/plots/` when the training loop checkpoints: at the first checkpoint, then at
  most once per `min_seconds` (drawing takes seconds, and a run may checkpoint every step), and
  always at the last step. Nothing is drawn before the first logged row."""

  def __init__(self, workdir: str, min_seconds: float = 60.0):
    self.workdir, self.min_seconds = workdir, min_seconds
    self._last = None

  def at_checkpoint(self, final: bool) -> list[str]:
    now = time.monotonic()
    if not final and self._last is not None and now - self._last < self.min_seconds:
      return []
    path = paths_lib.join(self.workdir, 'metrics.jsonl')
    if not metrics_exist(path) or not read_metrics(path):
      return []
    self._last = now
    return plot_workdir(self.workdir)
