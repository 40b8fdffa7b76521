"""`DIR/summary.json` and `DIR/summary.md` from the finished runs' records.

summary.json:
  {"baseline": NAME, "seeds": [..], "convention": "...",
   "variants": {NAME: {"metrics": {METRIC: {"mean", "std", "ci95": [lo, hi], "n"}},
                       "per_seed": {METRIC: {SEED: value}},
                       "difference_from_baseline": {METRIC: {"mean", "std", "ci95", "n", "seeds"}}}}}
Statistics as in `mmjax/sweep/stats.py` (std ddof=1, Student-t 95% interval).
"""

from __future__ import annotations

import json
import os

from mmjax.sweep import stats

CONVENTION = ('mean over seeds; std with ddof=1; ci95 = mean -/+ t(0.975, n-1) * std / sqrt(n) '
              '(Student t); differences are paired by seed (variant - baseline at the same seed)')


def build_summary(records: list[dict], variants: list[str], metrics: list[str],
                  baseline: str) -> dict:
  """`records`: each finished run's {"variant", "seed", "metrics": {name: value}}."""
  per_seed = {v: {m: {} for m in metrics} for v in variants}
  for rec in records:
    for m in metrics:
      value = rec['metrics'].get(m)
      if value is not None:
        per_seed[rec['variant']][m][int(rec['seed'])] = float(value)
  out = {'baseline': baseline, 'seeds': sorted({int(r['seed']) for r in records}),
         'convention': CONVENTION, 'variants': {}}
  for v in variants:
    entry = {'metrics': {m: stats.describe(list(per_seed[v][m].values())) for m in metrics},
             'per_seed': {m: {str(s): x for s, x in sorted(per_seed[v][m].items())}
                          for m in metrics}}
    if v != baseline:
      entry['difference_from_baseline'] = {
          m: stats.paired_difference(per_seed[v][m], per_seed[baseline][m]) for m in metrics}
    out['variants'][v] = entry
  return out


def _num(x) -> str:
  if x is None:
    return '–'
  return f'{x:.4g}' if abs(x) >= 1e-3 or x == 0 else f'{x:.2e}'


def _signed(x) -> str:
  s = _num(x)
  return s if s.startswith('-') or s == '–' else '+' + s


def _interval(ci, signed=False) -> str:
  if ci is None:
    return '–'
  f = _signed if signed else _num
  return f'[{f(ci[0])}, {f(ci[1])}]'


def format_markdown(summary: dict, title: str, metrics: list[str]) -> str:
  base = summary['baseline']
  seeds = summary['seeds']
  lines = [f'# {title}', '',
           f'{len(seeds)} seed(s) per variant ({", ".join(map(str, seeds))}); baseline `{base}`.',
           f'Convention: {summary["convention"]}.', '',
           '## Values (mean ± std, 95% interval, n)', '',
           '| variant | ' + ' | '.join(f'`{m}`' for m in metrics) + ' |',
           '|---|' + '---|' * len(metrics)]
  for v, entry in summary['variants'].items():
    cells = []
    for m in metrics:
      d = entry['metrics'][m]
      cells.append(f'{_num(d["mean"])} ± {_num(d["std"])} {_interval(d["ci95"])} n={d["n"]}')
    lines.append(f'| {v} | ' + ' | '.join(cells) + ' |')
  lines += ['', f'## Paired difference from `{base}` (mean, 95% interval)', '',
            '| variant | ' + ' | '.join(f'`{m}`' for m in metrics) + ' |',
            '|---|' + '---|' * len(metrics)]
  for v, entry in summary['variants'].items():
    if v == base:
      continue
    cells = []
    for m in metrics:
      d = entry['difference_from_baseline'][m]
      mark = ''
      if d['ci95'] is not None and (d['ci95'][0] > 0 or d['ci95'][1] < 0):
        mark = ' *'
      cells.append(f'{_signed(d["mean"])} {_interval(d["ci95"], signed=True)}{mark}')
    lines.append(f'| {v} | ' + ' | '.join(cells) + ' |')
  lines += ['', '`*`: the 95% interval of the paired difference excludes 0.', '']
  return '\n'.join(lines)


def write_summary(sweep_dir: str, summary: dict, markdown: str) -> tuple[str, str]:
  paths = (os.path.join(sweep_dir, 'summary.json'), os.path.join(sweep_dir, 'summary.md'))
  for path, text in zip(paths, (json.dumps(summary, indent=2, sort_keys=False) + '\n', markdown)):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.write(text)
    os.replace(tmp, path)
  return paths
