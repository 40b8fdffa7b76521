"""The evaluation report: `OUT/step_<N>.json` (OUT defaults to `DIR/eval`) and a printed table.

Layout:
  {"step": N,
   "zero_shot":    {"<dataset>/<modality>": {"top1": .., "top5": .., "mean_per_class_recall": ..}},
   "retrieval":    {"<dataset>/<modality>_to_text": {"R@1": .., ...}, "<dataset>/text_to_<modality>": ..},
   "few_shot":     {"<dataset>/<modality>": {"<k>shot": {"top1": .., "top1_std": .., "l2": ..}}},
   "linear_probe": {"<dataset>/<modality>": {"top1": .., "train_top1": .., "l2": ..}},
   "preprocessing": {"templates": .., "tokenizer": .., "max_length": .., "lowercase": .., "clips": ..},
   "datasets":     {"<dataset>": every result, class names and template set of that dataset},
   "skipped":      {"<dataset>": {"reason": .., "prepare": <command>}},
   "checkpoint": .., "mmjax_version": ..}
Accuracies and recalls are fractions; the table shows them as percentages.
"""

from __future__ import annotations

import importlib.metadata
import json
import os

import numpy as np

SECTIONS = ('zero_shot', 'retrieval', 'few_shot', 'linear_probe')


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
                 preprocessing=None, few_shot=None) -> dict:
  """The report dict; sections are `{name: {metric: value}}`."""
  out = {
      'step': int(step),
      'zero_shot': dict(zero_shot or {}),
      'retrieval': dict(retrieval or {}),
      'linear_probe': dict(linear_probe or {}),
      'preprocessing': dict(preprocessing or {}),
  }
  if few_shot:
    out['few_shot'] = dict(few_shot)
  return _jsonable(out)


def mmjax_version() -> str:
  try:
    return importlib.metadata.version('mmjax')
  except importlib.metadata.PackageNotFoundError:
    return 'unknown (mmjax is not pip-installed)'


def build_full_report(step: int, results: dict, *, tokenizer: dict, lowercase: bool,
                      checkpoint: str = '', skipped=None, text_cache=None) -> dict:
  """The report of `results` (`{dataset: one_model.evaluate_entry(...)['results']}`): the flat
  sections keyed `<dataset>/...`, plus every dataset's results, what was skipped and why."""
  zs, rt, fs, lp = {}, {}, {}, {}
  prep = {'templates': {}, 'tokenizer': tokenizer, 'max_length': {}, 'lowercase': lowercase,
          'clips': {}}
  for name, r in results.items():
    for m, v in r['zero_shot'].items():
      zs[f'{name}/{m}'] = v
      prep['templates'][f'{name}/{m}'] = r['templates'][m]['templates']
    for direction, v in r['retrieval'].items():
      rt[f'{name}/{direction}'] = v
    for m, shots in r['few_shot'].items():
      fs[f'{name}/{m}'] = {k: {'top1': v['top1'], 'top1_std': v['top1_std'], 'l2': v['l2']}
                           for k, v in shots.items()}
    for m, v in r['linear_probe'].items():
      lp[f'{name}/{m}'] = {k: v[k] for k in ('top1', 'train_top1', 'l2')}
    prep['max_length'][name] = r['preprocessing']['text_length']
    prep['clips'][name] = r['preprocessing']['clips']
  out = build_report(step, zs, rt, lp, prep, fs)
  out.update(_jsonable({'datasets': results, 'skipped': dict(skipped or {}),
                        'checkpoint': checkpoint, 'mmjax_version': mmjax_version(),
                        'text_cache': dict(text_cache or {})}))
  return out


def eval_dir(workdir: str) -> str:
  """The default report directory of a training run."""
  return os.path.join(workdir, 'eval')


def report_path(workdir: str, step: int) -> str:
  """The report of `step` written with the default output (`workdir/eval`)."""
  return report_file(eval_dir(workdir), step)


def report_file(output: str, step: int) -> str:
  return os.path.join(output, f'step_{int(step)}.json')


def write_report(report: dict, output: str) -> str:
  """Writes the report atomically into the `output` directory; returns its path."""
  path = report_file(output, report['step'])
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
  if metric == 'l2':
    return f'{metric} {value:g}'
  return f'{metric} {100.0 * value:6.2f}'


def format_table(report: dict) -> str:
  """One line per (section, dataset/modality): metrics as percentages, ranks as numbers."""
  rows = []
  for section in SECTIONS:
    for name, values in sorted(report.get(section, {}).items()):
      if section == 'few_shot':   # {'<k>shot': {'top1', 'l2', ..}}: top-1 per shot, then L2
        shots = sorted(values, key=lambda k: int(k[:-len('shot')]))
        cells = '  '.join([_cell(k, values[k]['top1']) for k in shots] +
                          [_cell('l2', values[shots[0]]['l2'])] if shots else [])
      else:
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
