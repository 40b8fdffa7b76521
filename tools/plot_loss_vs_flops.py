"""Training loss against cumulative model FLOPs, for the variants of a sweep.

  python -m tools.plot_loss_vs_flops --sweep_dir=runs/sweeps/long_range --out=loss_vs_flops.png
  python -m tools.plot_loss_vs_flops --sweep_dir=DIR --variants=mamba,mom --baseline=mamba \
      --json=loss_vs_flops.json

For each run `DIR/<variant>/seed_<s>/` the tool rebuilds the run's config from its
`sweep_run.json` (config file and overrides), counts the model FLOPs of one training step of every
task (`mmjax.plan.flop_count.count_model_flops` of the traced step: forward and backward matmuls,
the selective scan analytically; traced only, nothing is compiled or run), and reads
`metrics.jsonl`: each log row's cumulative step count per task (`tasks/<task>/steps`) times that
task's FLOPs per step, summed over tasks, is the FLOPs spent up to the row. A task's loss at a
row is the mean of its window losses (`tasks/<task>/loss`, weighted by `window_steps`) over the
last `--smooth` rows in which it ran; "mean over tasks" averages the tasks' curves once every task
has run. A task with several resolutions counts the mean of its signatures' FLOPs.

Figure: one panel per task plus the mean, one curve per variant (seeds averaged on a common FLOPs
grid). `--json` adds, per variant, FLOPs per step of each task, total FLOPs, the final smoothed
losses and the FLOPs at which each curve first reaches the baseline's final loss (and that as a
fraction of the baseline's total FLOPs): the "same loss with fewer FLOPs" comparison.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN = 'mean over tasks'


def task_step_flops(config) -> dict[str, float]:
  """{task name: model FLOPs of one training step} of a config (traced, not compiled)."""
  from mmjax.core import partitioning
  from mmjax.core.tasks import tasks_from_config
  from mmjax.plan import flop_count
  from mmjax.train import state as state_lib, step as step_lib
  mesh = partitioning.make_mesh(config.mesh)
  graphdef, abstract, shardings = state_lib.abstract_train_state(config, mesh)
  train_step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  out = {}
  for task in tasks_from_config(config):
    counts = []
    for sig in task.signatures():
      batch = step_lib.abstract_batch(sig, config, mesh)
      counts.append(flop_count.count_model_flops(
          lambda: train_step.trace(abstract, batch, sig)).flops)  # noqa: B023 - called at once
    out[task.name] = float(np.mean(counts))
  return out


def cumulative_flops(rows: list[dict], flops: dict[str, float]) -> np.ndarray:
  """FLOPs spent up to each row: sum over tasks of `tasks/<task>/steps` x FLOPs per step."""
  return np.array([sum(float(r.get(f'tasks/{t}/steps', 0)) * f for t, f in flops.items())
                   for r in rows])


def smoothed_task_loss(rows: list[dict], task: str, smooth: int) -> np.ndarray:
  """Per row, the `window_steps`-weighted mean of the task's window losses over the last
  `smooth` rows in which it ran (NaN before it first ran)."""
  out = np.full(len(rows), np.nan)
  seen: list[tuple[float, float]] = []
  for i, r in enumerate(rows):
    loss = r.get(f'tasks/{task}/loss')
    if loss is not None and np.isfinite(loss):
      seen.append((float(loss), float(r.get(f'tasks/{task}/window_steps', 1))))
    if seen:
      last = seen[-smooth:]
      out[i] = sum(v * w for v, w in last) / sum(w for _, w in last)
  return out


def loss_curves(rows: list[dict], tasks, smooth: int) -> dict[str, np.ndarray]:
  """{task: smoothed loss per row, MEAN: their mean where every task has a value}."""
  curves = {t: smoothed_task_loss(rows, t, smooth) for t in tasks}
  stacked = np.stack([curves[t] for t in tasks])
  curves[MEAN] = np.where(np.isnan(stacked).any(axis=0), np.nan, stacked.mean(axis=0))
  return curves


def flops_to_reach(flops: np.ndarray, loss: np.ndarray, target: float) -> float | None:
  """The first cumulative FLOPs at which `loss` is at or below `target` (None if never)."""
  hit = np.nonzero(np.nan_to_num(loss, nan=np.inf) <= target)[0]
  return float(flops[hit[0]]) if hit.size else None


def read_run(run_dir: str, smooth: int) -> dict:
  """One run: its task FLOPs, cumulative FLOPs per row and smoothed loss curves."""
  from mmjax import config as config_lib
  from mmjax.train.curves import read_metrics
  with open(os.path.join(run_dir, 'sweep_run.json')) as f:
    meta = json.load(f)
  config_arg = meta['config']
  if not os.path.exists(config_arg.partition(':')[0]):
    config_arg = os.path.join(ROOT, config_arg)
  config = config_lib.load_config(config_arg, [tuple(o) for o in meta['overrides']])
  flops = task_step_flops(config)
  rows = [r for r in read_metrics(os.path.join(run_dir, 'metrics.jsonl'))
          if any(f'tasks/{t}/steps' in r for t in flops)]
  if not rows:
    raise ValueError(f'{run_dir}/metrics.jsonl has no rows with per-task step counts.')
  return dict(task_flops=flops, flops=cumulative_flops(rows, flops),
              steps=[int(r['step']) for r in rows], curves=loss_curves(rows, sorted(flops), smooth))


def mean_curve(runs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  """Seeds averaged on the first seed's FLOPs grid (one seed: its own curve)."""
  grid = runs[0]['flops']
  values = [np.interp(grid, r['flops'], r['curves'][key], left=np.nan) for r in runs]
  return grid, np.mean(values, axis=0)


def summarise(per_variant: dict[str, list[dict]], baseline: str) -> dict:
  keys = [MEAN] + sorted(per_variant[baseline][0]['task_flops'])
  final = {v: {k: float(mean_curve(runs, k)[1][-1]) for k in keys}
           for v, runs in per_variant.items()}
  base_total = float(mean_curve(per_variant[baseline], MEAN)[0][-1])
  out = {'baseline': baseline, 'variants': {}}
  for v, runs in per_variant.items():
    reach = {}
    for k in keys:
      grid, loss = mean_curve(runs, k)
      at = flops_to_reach(grid, loss, final[baseline][k])
      reach[k] = {'flops': at, 'fraction_of_baseline_total': None if at is None
                  else at / base_total}
    out['variants'][v] = {
        'seeds': len(runs), 'task_flops_per_step': runs[0]['task_flops'],
        'total_flops': float(mean_curve(runs, MEAN)[0][-1]), 'final_loss': final[v],
        'reach_baseline_final_loss': reach}
  return out


def plot(per_variant: dict[str, list[dict]], path: str, title: str) -> str:
  from matplotlib.figure import Figure
  keys = [MEAN] + sorted(next(iter(per_variant.values()))[0]['task_flops'])
  cols = 3
  rows = -(-len(keys) // cols)
  fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=80)
  for i, k in enumerate(keys):
    ax = fig.add_subplot(rows, cols, i + 1)
    for v, runs in per_variant.items():
      grid, loss = mean_curve(runs, k)
      ax.plot(grid / 1e12, loss, label=v)
    ax.set_title(k, fontsize=9)
    ax.set_xlabel('cumulative model TFLOPs', fontsize=8)
    ax.set_ylabel('training loss', fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if i == 0:
      ax.legend(fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path)
  return path


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m tools.plot_loss_vs_flops',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--sweep_dir', required=True, help='a sweep folder (DIR/<variant>/seed_*/)')
  parser.add_argument('--variants', default='', help='comma-separated (default: every variant '
                      'with a finished metrics file)')
  parser.add_argument('--baseline', default='', help='variant whose final loss is the target '
                      '(default: the first of --variants)')
  parser.add_argument('--smooth', type=int, default=5, help='log rows per loss average')
  parser.add_argument('--out', required=True, help='PNG to write')
  parser.add_argument('--json', default='', help='also write the numbers here')
  parser.add_argument('--title', default='training loss against model FLOPs')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.sweep_dir):
    print(f'error: --sweep_dir {args.sweep_dir} is not a folder; point it at a sweep workdir.',
          file=sys.stderr)
    return 2
  found = sorted(os.path.basename(os.path.dirname(os.path.dirname(p))) for p in glob.glob(
      os.path.join(args.sweep_dir, '*', 'seed_*', 'metrics.jsonl')))
  found = list(dict.fromkeys(found))
  variants = [v for v in args.variants.split(',') if v] or found
  missing = [v for v in variants if v not in found]
  if not variants or missing:
    print(f'error: no runs with metrics for {missing or "any variant"} under {args.sweep_dir}; '
          f'variants there: {", ".join(found) or "none"}.', file=sys.stderr)
    return 2
  baseline = args.baseline or variants[0]
  if baseline not in variants:
    print(f'error: --baseline {baseline} is not one of --variants ({", ".join(variants)}).',
          file=sys.stderr)
    return 2
  if args.smooth < 1:
    print('error: --smooth must be a positive number of rows.', file=sys.stderr)
    return 2
  per_variant = {}
  for v in variants:
    per_variant[v] = [read_run(d, args.smooth) for d in sorted(glob.glob(
        os.path.join(args.sweep_dir, v, 'seed_*'))) if os.path.exists(
            os.path.join(d, 'metrics.jsonl'))]
  print(plot(per_variant, args.out, args.title))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(summarise(per_variant, baseline), f, indent=1)
    print(args.json)
  return 0


if __name__ == '__main__':
  sys.exit(main())
