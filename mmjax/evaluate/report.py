"""The evaluation report: `DIR/eval/step_<N>.json` and a printed table.

Layout:
  {"step": N,
   "zero_shot":    {"<dataset>/<modality>": {"top1": .., "top5": ..}},
   "retrieval":    {"<dataset>/<modality>_to_text": {"R@1": .., ...}, "<dataset>/text_to_<modality>": ..},
   "linear_probe": {"<dataset>/<modality>": {"top1": ..}},
   "preprocessing": {"templates": .., "tokenizer": .., "max_length": .., "lowercase": .., "clips": ..}}
Accuracies and recalls are fractions; the table shows them as percentages.
"""

from __future__ import annotations

import json
import os

import numpy as np

SECTIONS = ('zero_shot', 'retrieval', 'linear_probe')


def _jsonable(x):
  """Plain Python values (numpy scalars/arrays, tuples -> float/int/list)."""
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, np.generic):
    return x.item()
  return x


def build_report(step: int, zero_shot=None, retrieval=None, linear_probe=None,
                 preprocessing=None) -> dict:
  """The report dict; sections are `{name: {metric: value}}`."""
  return _jsonable({
      'step': int(step),
      'zero_shot': dict(zero_shot or {}),
      'retrieval': dict(retrieval or {}),
      'linear_probe': dict(linear_probe or {}),
      'preprocessing': dict(preprocessing or {}),
  })


def report_path(workdir: str, step: int) -> str:
  return os.path.join(workdir, 'eval', f'step_{int(step)}.json')


def write_report(report: dict, workdir: str) -> str:
  """Writes the report atomically (temporary file + rename); returns its path."""
  path = report_path(workdir, report['step'])
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(_jsonable(report), f, indent=2, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)
  return path


def read_report(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def _cell(metric: str, value) -> str:
  if not isinstance(value, (int, float)):
    return f'{metric} {value}'
  if metric.endswith('rank'):
    return f'{metric} {value:.1f}'
  return f'{metric} {100.0 * value:6.2f}'


def format_table(report: dict) -> str:
  """One line per (section, dataset/modality): metrics as percentages, ranks as numbers."""
  rows = []
  for section in SECTIONS:
    for name, values in sorted(report.get(section, {}).items()):
      cells = '  '.join(_cell(k, v) for k, v in values.items())
      rows.append((section.replace('_', ' '), name, cells))
  header = f'evaluation at step {report["step"]}'
  if not rows:
    return header + ': no results.'
  w0 = max(len(r[0]) for r in rows)
  w1 = max(len(r[1]) for r in rows)
  lines = [header, '-' * len(header)]
  lines += [f'{a:<{w0}}  {b:<{w1}}  {c}' for a, b, c in rows]
  return '\n'.join(lines)
