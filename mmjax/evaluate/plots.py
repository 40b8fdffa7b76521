"""Figures: zero-shot confusion matrices and training curves from `metrics.jsonl`.

Uses matplotlib's object API with the Agg canvas (`Figure.savefig`), never pyplot, so no global
backend state is touched and it runs headless.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from mmjax.train.metrics_writer import last_rows


def safe_name(name: str) -> str:
  """A file-name-safe version of `name` (dataset names may hold '/' or ':')."""
  return re.sub(r'[^A-Za-z0-9._-]+', '_', str(name)).strip('_') or 'unnamed'


def confusion_path(workdir: str, dataset: str, modality: str, step: int) -> str:
  return os.path.join(workdir, 'plots',
                      f'confusion_{safe_name(dataset)}_{safe_name(modality)}_step_{int(step)}.png')


def plot_confusion(matrix, class_names: Sequence[str], path: str, title: str = '') -> str:
  """Saves a row-normalised confusion matrix `[classes, classes]` (rows = true) with counts."""
  matrix = np.asarray(matrix)
  c = matrix.shape[0]
  rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  size = min(max(4.0, 0.45 * c + 2.0), 24.0)
  fig = Figure(figsize=(size, size))
  ax = fig.add_subplot()
  im = ax.imshow(rates, vmin=0.0, vmax=1.0, cmap='Blues')
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='fraction of true class')
  ticks = np.arange(c)
  labels = [str(n) for n in class_names] if len(class_names) == c else [str(i) for i in ticks]
  ax.set_xticks(ticks, labels, rotation=90 if c > 10 else 0)
  ax.set_yticks(ticks, labels)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  if c <= 30:
    for i in range(c):
      for j in range(c):
        if matrix[i, j]:
          ax.text(j, i, str(int(matrix[i, j])), ha='center', va='center', fontsize=7,
                  color='white' if rates[i, j] > 0.5 else 'black')
  ax.set_title(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=100)
  return path


def read_metrics(path: str) -> list[dict]:
  """Records of a `metrics.jsonl` file, each step's last row (a resumed run appends the steps it
  redoes); a truncated last line (run still writing) is skipped."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'no metrics file at {path}: point --workdir at a training run.')
  with open(path) as f:
    lines = [ln for ln in f.read().splitlines() if ln.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i == len(lines) - 1:
        break
      raise ValueError(f'{path} line {i + 1} is not valid JSON ({e.msg}).') from None
  return last_rows(records)


# Whole-run quantities: one curve, not split by the task of the logged step.
GLOBAL_KEYS = ('learning_rate', 'examples_per_sec', 'step_time', 'input_wait_fraction')


def _series(records: Sequence[dict]) -> dict[str, dict[str, tuple[list, list]]]:
  """{metric: {task: (steps, values)}} over every finite numeric value of the records.

  A plain key belongs to the record's `task` (or to 'all' for `GLOBAL_KEYS`); a key
  `tasks/<name>/<metric>` is `<metric>` of task `<name>`. A (metric, task, step) seen twice is
  kept once.
  """
  out: dict[str, dict[str, tuple[list, list]]] = {}
  seen = set()
  for r in records:
    if 'step' not in r:
      continue
    for key, value in r.items():
      if key in ('step', 'task') or isinstance(value, bool) or not isinstance(value, (int, float)):
        continue
      if not math.isfinite(value):
        continue
      if key.startswith('tasks/') and key.count('/') >= 2:
        task, metric = key[len('tasks/'):].rsplit('/', 1)
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
  """One figure per numeric metric (`<metric>.png` in `out_dir`), one curve per task."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for key, by_task in sorted(_series(records).items()):
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
    path = os.path.join(out_dir, f'{safe_name(key)}.png')
    fig.savefig(path, dpi=100)
    paths.append(path)
  return paths


def plot_workdir(workdir: str) -> list[str]:
  """Curves of `workdir/metrics.jsonl` into `workdir/plots/`; returns the files written."""
  records = read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  if not records:
    raise ValueError(f'{os.path.join(workdir, "metrics.jsonl")} holds no records yet.')
  return plot_metrics(records, os.path.join(workdir, 'plots'))
