"""The lines a training run ends with: steps, wall time, goodput, last and best metrics, and
where its outputs are.

  == run summary
  steps        2400 of 2400, wall time 0:07:12
  goodput      0.912 (productive 394s of 432s)
  last         step 2400: image_text loss 0.4121, video_text loss 0.8714, ...
  best         image_text loss 0.3977 (step 2380), ...
  outputs      checkpoints runs/demo/checkpoints (latest step 2400) ...

Values come from `metrics.jsonl` (all runs of the workdir, so a resumed run's best counts too).
`goodput` is any flat dict of numbers (e.g. mmjax.train.goodput's accounting); None leaves the
line out.
"""

from __future__ import annotations

import datetime
import os

from mmjax import paths
from mmjax.train import curves, metrics_writer


def _task_series(records: list[dict], metric: str) -> dict[str, list[tuple[int, float]]]:
  """{task: [(step, value)]} of `tasks/<task>/<metric>` (the per-task window means)."""
  out: dict[str, list[tuple[int, float]]] = {}
  for r in records:
    for key, value in r.items():
      if key.startswith('tasks/') and key.endswith('/' + metric) and isinstance(value, float):
        task = key[len('tasks/'):-len(metric) - 1]
        if '/' not in task:
          out.setdefault(task, []).append((r['step'], value))
  return out


def _eval_series(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
  out: dict[str, list[tuple[int, float]]] = {}
  for r in records:
    for key, value in r.items():
      if key.startswith('eval/') and isinstance(value, (int, float)):
        out.setdefault(key, []).append((r['step'], float(value)))
  return out


def _format_goodput(goodput: dict) -> str:
  parts = []
  for key, value in goodput.items():
    if isinstance(value, float):
      parts.append(f'{key} {value:.3f}')
    else:
      parts.append(f'{key} {value}')
  return ', '.join(parts)


def summarize(workdir: str, total_steps: int, final_step: int, wall_seconds: float,
              goodput: dict | None = None) -> str:
  """The summary as text (see the module docstring)."""
  path = paths.join(workdir, 'metrics.jsonl')
  records = curves.read_metrics(path) if metrics_writer.metrics_exist(path) else []
  wall = datetime.timedelta(seconds=int(round(wall_seconds)))
  lines = ['== run summary',
           f'steps        {final_step} of {total_steps}, wall time {wall}']
  if goodput:
    lines.append(f'goodput      {_format_goodput(goodput)}')
  losses = _task_series(records, 'loss')
  if losses:
    last = ', '.join(f'{t} loss {s[-1][1]:.4f}' for t, s in sorted(losses.items()))
    best = ', '.join(f'{t} loss {v:.4f} (step {st})'
                      for t, s in sorted(losses.items())
                      for st, v in [min(s, key=lambda sv: sv[1])])
    lines.append(f'last         {last}')
    lines.append(f'best         {best}')
  for key, series in sorted(_eval_series(records).items()):
    st, v = max(series, key=lambda sv: sv[1])
    lines.append(f'eval         {key} last {series[-1][1]:.4f} (step {series[-1][0]}), '
                 f'best {v:.4f} (step {st})')
  ckpts = os.path.join(workdir, 'checkpoints')
  steps = sorted(int(d) for d in os.listdir(ckpts) if d.isdigit()) if os.path.isdir(ckpts) else []
  latest = f' (latest step {steps[-1]})' if steps else ''
  lines += [f'outputs      checkpoints {ckpts}{latest}',
            f'             metrics {path}, config {os.path.join(workdir, "config.json")}',
            f'             TensorBoard {os.path.join(workdir, "tensorboard")}, '
            f'plots {os.path.join(workdir, "plots")}']
  return '\n'.join(lines)
