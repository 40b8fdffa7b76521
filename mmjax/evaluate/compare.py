"""Several models in one table: `--workdir=A,B,C` evaluates each (runs or exports) and writes
`OUT/comparison.md` and `OUT/comparison.json`, one row per (section, dataset/modality, metric)
and one column per model, from each model's own report (`OUT/<label>/step_<N>.json`).
"""

from __future__ import annotations

import json
import os

from mmjax.evaluate import report as report_lib

METRICS = {'zero_shot': ('top1', 'top5', 'mean_per_class_recall'),
           'retrieval': ('R@1', 'R@5', 'R@10'),
           'linear_probe': ('top1',)}


def labels(workdirs: list[str]) -> list[str]:
  """A short column name per model: the folder's name, its full path where names repeat."""
  names = [os.path.basename(os.path.normpath(w)) or w for w in workdirs]
  return [w if names.count(n) > 1 else n for n, w in zip(names, workdirs)]


def rows(rep: dict) -> dict[tuple[str, str, str], float]:
  """`{(section, name, metric): value}` of one report (fractions)."""
  out = {}
  for section, metrics in METRICS.items():
    for name, values in rep.get(section, {}).items():
      for m in metrics:
        if m in values:
          out[(section, name, m)] = values[m]
  for name, shots in rep.get('few_shot', {}).items():
    for k, v in shots.items():
      out[('few_shot', name, f'{k} (l2 {v["l2"]:g})')] = v['top1']
  return out


def table(reports: dict[str, dict]) -> dict:
  """`{'models': [...], 'steps': {...}, 'rows': [{'section', 'name', 'metric', <model>: v}]}`."""
  per = {label: rows(rep) for label, rep in reports.items()}
  keys = list(dict.fromkeys(k for r in per.values() for k in r))
  return {'models': list(reports), 'steps': {k: r['step'] for k, r in reports.items()},
          'checkpoints': {k: r.get('checkpoint', '') for k, r in reports.items()},
          'rows': [{'section': s, 'name': n, 'metric': m,
                    **{label: per[label].get((s, n, m)) for label in reports}}
                   for s, n, m in keys]}


def markdown(t: dict) -> str:
  head = '| section | dataset/modality | metric | ' + ' | '.join(t['models']) + ' |'
  lines = [head, '|---|---|---|' + '---:|' * len(t['models'])]
  for r in t['rows']:
    cells = ['' if r[m] is None else f'{100.0 * r[m]:.2f}' for m in t['models']]
    lines.append(f'| {r["section"].replace("_", " ")} | {r["name"]} | {r["metric"]} | '
                 + ' | '.join(cells) + ' |')
  steps = ', '.join(f'{m} step {s}' for m, s in t['steps'].items())
  return f'Percentages; {steps}.\n\n' + '\n'.join(lines) + '\n'


def write(reports: dict[str, dict], output: str) -> str:
  """Writes `OUT/comparison.json` and `.md`; returns the markdown path."""
  t = table(reports)
  os.makedirs(output, exist_ok=True)
  with open(os.path.join(output, 'comparison.json'), 'w') as f:
    json.dump(report_lib._jsonable(t), f, indent=2)
  path = os.path.join(output, 'comparison.md')
  with open(path, 'w') as f:
    f.write(markdown(t))
  return path
