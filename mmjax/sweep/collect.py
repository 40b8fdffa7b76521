"""One finished run's numbers, flat: `{metric name: float}`.

Names a sweep file can ask for:
  zero_shot/<dataset>/<modality>/top1, retrieval/..., linear_probe/...
                           leaves of the evaluation report (`RUN/eval/step_<N>.json`)
  caption/<dataset>/<modality>/<right_digit_share|bleu4|cider>
                           the caption report (`RUN/eval/captions_step_<N>.json`, written by
                           `mmjax.evaluate.captioning` when a sweep metric starts with caption/)
  train/<key>              the last logged value of `<key>` in `RUN/metrics.jsonl`
                           (e.g. train/loss, train/tasks/video_text/loss)
  train/<key>:median       median over the logged rows, the first row left out when there are
  train/<key>:mean         more than two (it holds start-up); e.g. train/step_time:median
  time/train_seconds, time/eval_seconds
                           wall time of the training and evaluation commands of the sweep's
                           last attempt at the run (a resumed run counts only the resumed part)
A name may hold shell-style wildcards (`zero_shot/*/top1`): it stands for every matching metric.
`mean(A,B,...)` is the mean of the named metrics, where a run reports them all (e.g. a primary
metric `mean(zero_shot/digits/video/top1,zero_shot/digits/audio/top1)`).
Training rows are each step's last row, as `train/curves.read_metrics` reads them: a resumed run
appends rows for the steps it redoes, and those must not count twice.
"""

from __future__ import annotations

import fnmatch
import json
import math

import numpy as np

from mmjax import paths
from mmjax.train import metrics_writer

EVAL_SECTIONS = ('zero_shot', 'retrieval', 'linear_probe')
TIMING = ('time/', 'step_time', 'examples_per_sec', 'input_wait_fraction')


def read_rows(workdir: str) -> list[dict]:
  """metrics.jsonl rows with a loss (training steps), each step's last row, by step; a truncated
  last line (a run killed while writing) is skipped. On gs:// its segments are read too."""
  lines = metrics_writer.metrics_lines(paths.join(workdir, 'metrics.jsonl'))
  rows = []
  for i, line in enumerate(lines):
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      if i != len(lines) - 1:
        raise
  return [r for r in metrics_writer.last_rows(rows) if 'loss' in r]


def _number(v) -> float | None:
  if isinstance(v, bool) or not isinstance(v, (int, float)):
    return None
  return float(v) if math.isfinite(v) else None


def eval_metrics(report: dict, captions: dict | None = None) -> dict[str, float]:
  out = {}
  for section in EVAL_SECTIONS:
    for name, values in report.get(section, {}).items():
      for metric, v in values.items():
        if _number(v) is not None:
          out[f'{section}/{name}/{metric}'] = float(v)
  for dataset, modalities in (captions or {}).get('datasets', {}).items():
    for modality, values in modalities.items():
      for metric, v in values.items():
        if metric != 'count' and _number(v) is not None:
          out[f'caption/{dataset}/{modality}/{metric}'] = float(v)
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


def run_metrics(workdir: str, report: dict, timings: dict[str, float],
                captions: dict | None = None) -> dict[str, float]:
  out = eval_metrics(report, captions)
  out.update(train_metrics(read_rows(workdir)))
  out.update({f'time/{k}': float(v) for k, v in timings.items()})
  return out


def is_timing(metric: str) -> bool:
  """Wall-clock metrics: they differ between runs of the same command."""
  return any(t in metric for t in TIMING)


def is_pattern(metric: str) -> bool:
  return any(c in metric for c in '*?[')


def expand(metrics, names) -> list[str]:
  """The sweep's metric names with each wildcard pattern replaced by the matching `names` (in
  sorted order); a pattern that matches nothing stays, to be reported as missing."""
  out: list[str] = []
  for m in metrics:
    found = sorted(n for n in names if fnmatch.fnmatchcase(n, m)) if is_pattern(m) else [m]
    for n in found or [m]:
      if n not in out:
        out.append(n)
  return out


def wants_captions(metrics) -> bool:
  return any(m.startswith('caption/') for m in metrics)


def _derived_parts(metric: str) -> list[str] | None:
  if not (metric.startswith('mean(') and metric.endswith(')')):
    return None
  parts = [p.strip() for p in metric[len('mean('):-1].split(',') if p.strip()]
  return parts or None


def with_derived(values: dict[str, float], metrics) -> dict[str, float]:
  """`values` plus each `mean(A,B,...)` of `metrics` whose parts are all in `values`."""
  out = dict(values)
  for m in metrics:
    parts = _derived_parts(m)
    if parts and all(p in values for p in parts):
      out[m] = float(np.mean([values[p] for p in parts]))
  return out
