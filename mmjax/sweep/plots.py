"""Sweep figures (matplotlib object API, Agg canvas, no pyplot state):

- `DIR/plots/metrics.png`: one panel per metric, a bar per variant at the mean over seeds, error
  bars spanning the 95% interval, each seed's value as a dot;
- `DIR/plots/loss_vs_examples.png`: one panel per task, that task's training loss against
  examples seen (all tasks together, so AGD and the mixed baseline share an axis); a line per
  variant at the mean over seeds and a band of -/+ one std over seeds. Only real tasks get a
  panel: the mixed baseline's window means `tasks/mixed/<task>/loss` are that task's loss;
- `DIR/plots/curves.png` (with `--eval_steps`): each evaluation metric against the training
  step, a line per variant at the mean over seeds and a band over its 95% interval.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
from matplotlib.figure import Figure

_TASK_LOSS = re.compile(r'^tasks/([^/]+)/loss$')
_EXAMPLES = re.compile(r'^tasks/([^/]+)/examples$')


def plot_metrics(summary: dict, metrics: list[str], path: str) -> str:
  variants = list(summary['variants'])
  cols = min(3, len(metrics))
  rows = math.ceil(len(metrics) / cols)
  fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout='constrained')
  x = np.arange(len(variants))
  for i, metric in enumerate(metrics):
    ax = fig.add_subplot(rows, cols, i + 1)
    means, lo, hi = [], [], []
    for v in variants:
      d = summary['variants'][v]['metrics'][metric]
      m = d['mean'] if d.get('mean') is not None else np.nan
      ci = d.get('ci95') or [m, m]
      means.append(m)
      lo.append(m - ci[0])
      hi.append(ci[1] - m)
    ax.bar(x, means, color=[f'C{j}' for j in range(len(variants))], alpha=0.6)
    ax.errorbar(x, means, yerr=[lo, hi], fmt='none', ecolor='black', capsize=4)
    for j, v in enumerate(variants):
      values = list(summary['variants'][v]['per_seed'][metric].values())
      ax.plot(np.full(len(values), j), values, 'k.', markersize=4)
    ax.set_xticks(x, variants, rotation=20)
    ax.set_title(metric, fontsize=9)
  fig.suptitle('mean over seeds, error bars: 95% interval (Student t), dots: seeds', fontsize=9)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=110)
  return path


def loss_curves(rows: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """`{task: (examples seen, loss)}` from one run's metrics rows. Examples seen counts every
  task's examples; a task's loss is its own window mean (`tasks/T/loss`; in a mixed run
  `tasks/mixed/T/loss`, else the step's `T/loss`). `mixed` itself is no task."""
  out: dict[str, tuple[list, list]] = {}
  for row in rows:
    seen = sum(v for k, v in row.items() if _EXAMPLES.match(k) and isinstance(v, (int, float)))
    names = {m.group(1) for k in row for m in [_TASK_LOSS.match(k)] if m}
    names |= {k[:-len('/loss')] for k in row if k.endswith('/loss') and '/' not in k[:-5]}
    names |= {k[len('tasks/mixed/'):-len('/loss')] for k in row
              if k.startswith('tasks/mixed/') and k.endswith('/loss') and k.count('/') == 3}
    names.discard('mixed')
    for t in names:
      y = row.get(f'tasks/{t}/loss', row.get(f'tasks/mixed/{t}/loss', row.get(f'{t}/loss')))
      if isinstance(y, (int, float)) and math.isfinite(y):
        xs, ys = out.setdefault(t, ([], []))
        xs.append(seen)
        ys.append(y)
  return {t: (np.asarray(xs, float), np.asarray(ys, float)) for t, (xs, ys) in out.items()}


def band(curves: list[tuple[np.ndarray, np.ndarray]], points: int = 100):
  """Mean and std over runs of curves interpolated onto a common grid (where all runs have data)."""
  lo = max(c[0].min() for c in curves)
  hi = min(c[0].max() for c in curves)
  grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
  ys = np.stack([np.interp(grid, *c) for c in curves])
  std = ys.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(grid))
  return grid, ys.mean(axis=0), std


def plot_loss_curves(per_variant: dict[str, list[list[dict]]], path: str) -> str | None:
  """`per_variant`: {variant: [metrics rows of each seed's run]}."""
  curves = {v: [loss_curves(rows) for rows in runs] for v, runs in per_variant.items()}
  tasks = sorted({t for runs in curves.values() for c in runs for t in c})
  if not tasks:
    return None
  cols = min(2, len(tasks))
  nrows = math.ceil(len(tasks) / cols)
  fig = Figure(figsize=(5.5 * cols, 3.4 * nrows), layout='constrained')
  for i, task in enumerate(tasks):
    ax = fig.add_subplot(nrows, cols, i + 1)
    for j, (v, runs) in enumerate(curves.items()):
      have = [c[task] for c in runs if task in c and len(c[task][0])]
      if not have:
        continue
      grid, mean, std = band(have)
      ax.plot(grid, mean, color=f'C{j}', label=f'{v} (n={len(have)})')
      ax.fill_between(grid, mean - std, mean + std, color=f'C{j}', alpha=0.2)
    ax.set_title(task, fontsize=9)
    ax.set_xlabel('examples seen (all tasks)')
    ax.set_ylabel('training loss')
    ax.legend(fontsize=7)
  fig.suptitle('mean over seeds; band: -/+ one std over seeds', fontsize=9)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=110)
  return path


def plot_eval_curves(summary: dict, path: str) -> str | None:
  """Evaluation metrics against the training step (`curves` of summary.json), a line per
  variant at the mean over seeds and a band over the 95% interval (where n >= 2)."""
  metrics = sorted({m for e in summary['variants'].values() for m in e.get('curves', {})})
  if not metrics:
    return None
  cols = min(2, len(metrics))
  nrows = math.ceil(len(metrics) / cols)
  fig = Figure(figsize=(5.5 * cols, 3.4 * nrows), layout='constrained')
  for i, metric in enumerate(metrics):
    ax = fig.add_subplot(nrows, cols, i + 1)
    for j, (v, e) in enumerate(summary['variants'].items()):
      c = e.get('curves', {}).get(metric)
      if not c:
        continue
      steps, mean = np.asarray(c['steps']), np.asarray(c['mean'], float)
      ax.plot(steps, mean, marker='.', color=f'C{j}', label=f'{v} (n={max(c["n"])})')
      have = [k for k, ci in enumerate(c['ci95']) if ci is not None]
      if have:
        ax.fill_between(steps[have], [c['ci95'][k][0] for k in have],
                        [c['ci95'][k][1] for k in have], color=f'C{j}', alpha=0.2)
    ax.set_title(metric, fontsize=9)
    ax.set_xlabel('training step')
    ax.legend(fontsize=7)
  fig.suptitle('mean over seeds; band: 95% interval (Student t) over seeds', fontsize=9)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=110)
  return path
