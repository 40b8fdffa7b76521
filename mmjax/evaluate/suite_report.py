"""One table per suite (`OUT/<suite>.md` and `OUT/<suite>.json`), a bar chart (`OUT/<suite>.png`)
and TensorBoard scalars (`OUT/tensorboard/`), from a full report (`report.build_full_report`).

A table says what was evaluated (checkpoint, step, mmjax version, preprocessing, the class-name
and template set of each row) next to the numbers, and lists the datasets that were skipped with
the command that prepares them. Percentages in the markdown, fractions in the JSON.
"""

from __future__ import annotations

import json
import os
import re

from matplotlib.figure import Figure
from tensorboardX import SummaryWriter

from mmjax.evaluate import plots

SHOTS = ('1shot', '5shot', '10shot', '25shot')


def _pct(x) -> str:
  return '' if x is None else f'{100.0 * x:.2f}'


def _rows(rep: dict, suite: str) -> tuple[list[dict], list[dict]]:
  """(classification rows, retrieval rows) of the suite: one per dataset and modality."""
  rows, ret = [], []
  for name, r in rep.get('datasets', {}).items():
    if r['suite'] != suite:
      continue
    for m, zs in r['zero_shot'].items():
      row = {'dataset': name, 'tfds': r['dataset'], 'split': r['split'], 'modality': m,
             'examples': r['num_examples'], 'class_names': r['class_names']['set'],
             'templates': f'{r["templates"][m]["set"]} ({r["templates"][m]["count"]})', **zs}
      for k in SHOTS:
        if k in r['few_shot'].get(m, {}):
          row[f'few_shot_{k}'] = r['few_shot'][m][k]['top1']
      if m in r['linear_probe']:
        row['linear_probe'] = r['linear_probe'][m]['top1']
      rows.append(row)
    for m in [d[:-len('_to_text')] for d in r['retrieval'] if d.endswith('_to_text')]:
      row = {'dataset': name, 'tfds': r['dataset'], 'split': r['split'], 'modality': m,
             'items': r['retrieval_pool']['items'], 'captions': r['retrieval_pool']['captions']}
      for direction, label in ((f'{m}_to_text', 'to_text'), (f'text_to_{m}', 'from_text')):
        for k in ('R@1', 'R@5', 'R@10'):   # to_text: item queries; from_text: caption queries
          row[f'{label} {k}'] = r['retrieval'][direction][k]
      ret.append(row)
  return rows, ret


def suite_table(rep: dict, suite: str) -> dict:
  """The JSON table of one suite."""
  skipped = {k: v for k, v in rep.get('skipped', {}).items() if v.get('suite') == suite}
  first = next((r for r in rep.get('datasets', {}).values() if r['suite'] == suite), None)
  rows, ret = _rows(rep, suite)
  return {'suite': suite, 'checkpoint': rep.get('checkpoint', ''), 'step': rep['step'],
          'mmjax_version': rep.get('mmjax_version', ''),
          'preprocessing': {'tokenizer': rep['preprocessing'].get('tokenizer'),
                            'lowercase': rep['preprocessing'].get('lowercase'),
                            **(first['preprocessing'] if first else {})},
          'rows': rows, 'retrieval_rows': ret, 'skipped': skipped}


def markdown(table: dict) -> str:
  """A GitHub markdown rendering of `suite_table`'s result."""
  lines = [f'## {table["suite"]}: step {table["step"]}', '',
           f'checkpoint `{table["checkpoint"]}` · mmjax {table["mmjax_version"]} · '
           f'preprocessing {json.dumps(table["preprocessing"], sort_keys=True)}', '']
  text = ('dataset', 'tfds', 'split', 'modality', 'class_names', 'templates')
  counts = ('examples', 'items', 'captions')
  for rows in (table['rows'], table['retrieval_rows']):
    if not rows:
      continue
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines.append('| ' + ' | '.join(keys) + ' |')
    lines.append('|' + '|'.join('---' if k in text else '---:' for k in keys) + '|')
    for r in rows:
      cells = [str(r.get(k, '')) if (k in text or k in counts) else _pct(r.get(k)) for k in keys]
      lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
  if not table['rows'] and not table['retrieval_rows']:
    lines.append('No dataset of this suite was evaluated.')
  if table['skipped']:
    lines += ['', 'Skipped:', '']
    for name, s in sorted(table['skipped'].items()):
      how = f' Prepare it with: `{s["prepare"]}`' if s['prepare'] else ''
      lines.append(f'- {name}: {s["reason"]}{how}')
  return '\n'.join(lines) + '\n'


def bar_chart(table: dict, path: str) -> str | None:
  """Zero-shot top-1 (or text-to-item R@1 for retrieval) per dataset; None when nothing to plot."""
  bars = [(f'{r["dataset"]}\n{r["modality"]}', r['top1']) for r in table['rows']]
  bars += [(f'{r["dataset"]}\ntext->{r["modality"]}', r['from_text R@1'])
           for r in table['retrieval_rows']]
  if not bars:
    return None
  fig = Figure(figsize=(max(4.0, 0.8 * len(bars) + 2.0), 4.0))
  ax = fig.add_subplot()
  ax.bar(range(len(bars)), [100.0 * v for _, v in bars], color='tab:blue')
  ax.set_xticks(range(len(bars)), [b for b, _ in bars], fontsize=7,
                rotation=90 if len(bars) > 8 else 0)
  ax.set_ylabel('top-1 / R@1 (%)')
  ax.set_ylim(0, 100)
  ax.set_title(f'{table["suite"]}: step {table["step"]}')
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=100)
  return path


def suites_of(rep: dict) -> list[str]:
  found = [r['suite'] for r in rep.get('datasets', {}).values()]
  found += [s.get('suite', 'config_datasets') for s in rep.get('skipped', {}).values()]
  return list(dict.fromkeys(found))


def write_suite_reports(rep: dict, output: str) -> list[str]:
  """Writes `<suite>.md`, `<suite>.json` and `<suite>.png` per suite; returns the paths."""
  paths = []
  for suite in suites_of(rep):
    table = suite_table(rep, suite)
    base = os.path.join(output, plots.safe_name(suite))
    with open(base + '.json', 'w') as f:
      json.dump(table, f, indent=2, sort_keys=True)
    with open(base + '.md', 'w') as f:
      f.write(markdown(table))
    chart = bar_chart(table, base + '.png')
    paths += [base + '.md', base + '.json'] + ([chart] if chart else [])
  return paths


def scalar_tag(*parts: str) -> str:
  """A TensorBoard tag of only the characters it allows (`R@10` -> `R_at_10`), so tensorboardX
  has nothing to rename (and log about)."""
  return re.sub(r'[^-/\w.]', '_', '/'.join(parts).replace('@', '_at_'))


def log_tensorboard(rep: dict, output: str) -> str:
  """Every metric of the flat sections as a scalar `eval/<section>/<name>/<metric>` at the step
  (few-shot: `eval/few_shot/<name>/<k>shot`)."""
  path = os.path.join(output, 'tensorboard')
  writer = SummaryWriter(path)
  try:
    for section in ('zero_shot', 'retrieval', 'few_shot', 'linear_probe'):
      for name, values in rep.get(section, {}).items():
        for metric, v in values.items():
          if isinstance(v, dict):   # few-shot: {'<k>shot': {'top1', ..}}
            v = v.get('top1')
          if isinstance(v, (int, float)) and not isinstance(v, bool):
            writer.add_scalar(scalar_tag('eval', section, name, metric), v, rep['step'])
  finally:
    writer.close()
  return path
