"""One finished run's numbers, flat: `{metric name: float}`.

Names a sweep file can ask for:
  zero_shot/<dataset>/<modality>/top1, retrieval/..., linear_probe/...
                           leaves of the evaluation report (`RUN/eval/step_<N>.json`)
  train/<key>              the last logged value of `<key>` in `RUN/metrics.jsonl`
                           (e.g. train/loss, train/tasks/video_text/loss)
  train/<key>:median       median over the logged rows, the first row left out when there are
  train/<key>:mean         more than two (it holds start-up); e.g. train/step_time:median
  time/train_seconds, time/eval_seconds
                           wall time of the training and evaluation commands of the sweep's
                           last attempt at the run (a resumed run counts only the resumed part)
"""

from __future__ import annotations

import json
import math

import numpy as np

from mmjax import paths
from mmjax.train import metrics_writer

EVAL_SECTIONS = ('zero_shot', 'retrieval', 'linear_probe')
TIMING = ('time/', 'step_time', 'examples_per_sec', 'input_wait_fraction')


def read_rows(workdir: str) -> list[dict]:
  """metrics.jsonl rows with a loss (training steps), in order."""
  rows = [json.loads(line) for line in metrics_writer.metrics_lines(
      paths.join(workdir, 'metrics.jsonl'))]  # on gs://, its segments too
  return [r for r in rows if 'loss' in r]


def _number(v) -> float | None:
  if isinstance(v, bool) or not isinstance(v, (int, float)):
    return None
  return float(v) if math.isfinite(v) else None


def eval_metrics(report: dict) -> dict[str, float]:
  out = {}
  for section in EVAL_SECTIONS:
    for name, values in report.get(section, {}).items():
      for metric, v in values.items():
        if _number(v) is not None:
          out[f'{section}/{name}/{metric}'] = float(v)
  return out


def train_metrics(rows: list[dict]) -> dict[str, float]:
  out: dict[str, float] = {}
  series: dict[str, list[float]] = {}
  for row in rows:
    for k, v in row.items():
      x = _number(v)
      if x is None or k == 'step':
        continue
      out[f'train/{k}'] = x
      series.setdefault(k, []).append(x)
  for k, xs in series.items():
    body = xs[1:] if len(xs) > 2 else xs
    out[f'train/{k}:median'] = float(np.median(body))
    out[f'train/{k}:mean'] = float(np.mean(body))
  return out


def run_metrics(workdir: str, report: dict, timings: dict[str, float]) -> dict[str, float]:
  out = eval_metrics(report)
  out.update(train_metrics(read_rows(workdir)))
  out.update({f'time/{k}': float(v) for k, v in timings.items()})
  return out


def is_timing(metric: str) -> bool:
  """Wall-clock metrics: they differ between runs of the same command."""
  return any(t in metric for t in TIMING)
