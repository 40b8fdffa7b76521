"""`DIR/summary.json` and `DIR/summary.md` from the finished runs' records.

summary.json (schema 2):
  {"schema": 2,
   "provenance": {"commit", "dirty", "mmjax_version", "command", "start", "end"},
   "baseline": NAME, "seeds": [..], "metrics": [..], "convention": "...",
   "missing": [{"variant", "metric", "closest"}],      # asked for, never reported by a run
   "variants": {NAME: {
       "config_hash": H, "total_steps": N, "runs": n,
       "metrics": {METRIC: {"mean", "std", "ci95": [lo, hi], "n"} or {"missing": why}},
       "per_seed": {METRIC: {SEED: value}},
       "difference_from_baseline": {METRIC: {
           "mean", "std", "ci95", "n", "seeds", "p",  # paired by seed (Student t)
           "welch": {"mean", "ci95", "p", "df"},      # unpaired, unequal variances
           "p_holm",                                  # Holm over the sweep's comparisons
           "equivalence": {"margin", "p", "ci90", "equivalent"},   # with --margin (TOST)
           "power": {"detectable_effect", "effect", "seeds_needed"},
           "verdict": "..."}},
       "curves": {METRIC: {"steps", "mean", "ci95", "n"}}}},   # with --eval_steps
   "timing": {...}}                                   # with --bench: measured apart
Statistics as in `mmjax/sweep/stats.py` (std ddof=1, Student-t 95% interval). Wall-clock
metrics of the training runs are summarised but never tested: runs sharing a machine do not time
a variant; the timing pass (`--bench`) does.
"""

from __future__ import annotations

import difflib
import json
import os

from mmjax.sweep import collect, stats

SCHEMA = 2
CONVENTION = ('mean over seeds; std with ddof=1; ci95 = mean -/+ t(0.975, n-1) * std / sqrt(n) '
              '(Student t); differences are paired by seed (variant - baseline at the same seed), '
              'p two-sided; welch: unpaired Welch t interval; p_holm: Holm-adjusted paired p '
              'over every (variant, non-timing metric) comparison of the sweep; equivalence: two '
              'one-sided paired t-tests against the margin (alpha 0.05, the 90% interval inside '
              '-/+ margin); detectable_effect: the true difference the paired test finds with '
              '80% power at alpha 0.05 and the seeds at hand, from the observed spread')


def _closest(metric: str, names) -> list[str]:
  return difflib.get_close_matches(metric, sorted(names), n=3, cutoff=0.5)


def _verdict(d: dict, margin: float | None) -> str:
  if d.get('timing'):
    return 'not tested: timing from runs sharing a machine (see the timing pass)'
  if d['n'] < 2 or d['ci95'] is None:
    return f'unresolved: {d["n"]} paired seed(s), no interval'
  p = d.get('p_holm') if d.get('p_holm') is not None else d.get('p')
  if p is not None and p < 0.05 and (d['ci95'][0] > 0 or d['ci95'][1] < 0):
    return f'resolved: {"higher" if d["mean"] > 0 else "lower"} than the baseline'
  eq = d.get('equivalence')
  if eq and eq['equivalent']:
    return f'equivalent within -/+{eq["margin"]:g}'
  mde = (d.get('power') or {}).get('detectable_effect')
  seen = f'; the smallest effect it could see (80% power): {mde:.3g}' if mde is not None else ''
  return f'unresolved{seen}'


def _curves(records: list[dict], metric: str) -> dict | None:
  by_step: dict[int, list[float]] = {}
  for rec in records:
    for step, values in (rec.get('curve') or {}).items():
      if metric in values:
        by_step.setdefault(int(step), []).append(float(values[metric]))
  if len(by_step) < 2:
    return None
  steps = sorted(by_step)
  ds = [stats.describe(by_step[s]) for s in steps]
  return {'steps': steps, 'mean': [d['mean'] for d in ds], 'ci95': [d['ci95'] for d in ds],
          'n': [d['n'] for d in ds]}


def build_summary(records: list[dict], variants: list[str], metrics: list[str],
                  baseline: str, *, margin: float | None = None, effect: float | None = None,
                  provenance: dict | None = None, timing: dict | None = None) -> dict:
  """`records`: each finished run's {"variant", "seed", "metrics": {name: value}} (and, from
  the sweep, "curve", "variant_hash", "total_steps"). `metrics` may hold wildcard patterns;
  `margin` adds the equivalence test, `effect` the seeds needed for it (the pilot)."""
  records = [{**r, 'metrics': collect.with_derived(r['metrics'], metrics),
              'curve': {k: collect.with_derived(c, metrics) for k, c in
                        (r.get('curve') or {}).items()}} for r in records]
  names = set().union(*(r['metrics'] for r in records)) if records else set()
  metrics = collect.expand(metrics, names)
  per_seed = {v: {m: {} for m in metrics} for v in variants}
  for rec in records:
    for m in metrics:
      value = rec['metrics'].get(m)
      if value is not None:
        per_seed[rec['variant']][m][int(rec['seed'])] = float(value)
  out = {'schema': SCHEMA, 'provenance': dict(provenance or {}), 'baseline': baseline,
         'seeds': sorted({int(r['seed']) for r in records}), 'metrics': metrics,
         'convention': CONVENTION, 'missing': [], 'variants': {}}
  for v in variants:
    mine = [r for r in records if r['variant'] == v]
    hashes = sorted({r.get('variant_hash') for r in mine if r.get('variant_hash')})
    steps = sorted({r.get('total_steps') for r in mine if r.get('total_steps') is not None})
    entry = {'config_hash': hashes[0] if len(hashes) == 1 else (hashes or None),
             'total_steps': steps[0] if len(steps) == 1 else (steps or None), 'runs': len(mine),
             'metrics': {}, 'per_seed': {}}
    mine_names = set().union(*(r['metrics'] for r in mine)) if mine else set()
    for m in metrics:
      if per_seed[v][m]:
        entry['metrics'][m] = stats.describe(list(per_seed[v][m].values()))
      else:
        close = _closest(m, mine_names)
        entry['metrics'][m] = {'missing': f'no run of {v} reported it' + (
            f' (closest: {", ".join(close)})' if close else '')}
        out['missing'].append({'variant': v, 'metric': m, 'closest': close})
      entry['per_seed'][m] = {str(s): x for s, x in sorted(per_seed[v][m].items())}
    if v != baseline:
      diffs = {}
      for m in metrics:
        a, b = per_seed[v][m], per_seed[baseline][m]
        if not a or not b:
          diffs[m] = {'missing': f'{v if not a else baseline} did not report it'}
          continue
        d = stats.paired_test(a, b)
        d['welch'] = stats.welch(list(a.values()), list(b.values()))
        d['p_holm'] = None
        if collect.is_timing(m):
          d['timing'] = True
        elif margin is not None:
          d['equivalence'] = stats.equivalence([a[s] - b[s] for s in d['seeds']], margin)
        if d['std'] is not None and not d.get('timing'):
          d['power'] = {'detectable_effect': stats.detectable_effect(d['std'], d['n'])}
          if effect is not None:
            d['power'].update(effect=effect, seeds_needed=stats.seeds_needed(effect, d['std']))
        diffs[m] = d
      entry['difference_from_baseline'] = diffs
    curves = {m: c for m in metrics if not m.startswith(('train/', 'time/'))
              for c in [_curves(mine, m)] if c}
    if curves:
      entry['curves'] = curves
    out['variants'][v] = entry
  family = [(v, m) for v, e in out['variants'].items() for m, d in
            e.get('difference_from_baseline', {}).items()
            if not d.get('timing') and d.get('p') is not None]
  adjusted = stats.holm([out['variants'][v]['difference_from_baseline'][m]['p']
                         for v, m in family])
  for (v, m), p in zip(family, adjusted):
    out['variants'][v]['difference_from_baseline'][m]['p_holm'] = p
  for e in out['variants'].values():
    for d in e.get('difference_from_baseline', {}).values():
      if 'missing' not in d:
        d['verdict'] = _verdict(d, margin)
  if timing:
    out['timing'] = timing
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


def _value_cell(d: dict) -> str:
  if 'missing' in d:
    return 'missing'
  return f'{_num(d["mean"])} ± {_num(d["std"])} {_interval(d["ci95"])} n={d["n"]}'


def _p(x) -> str:
  return '–' if x is None else (f'{x:.3f}' if x >= 1e-3 else f'{x:.1e}')


def format_markdown(summary: dict, title: str, metrics: list[str] | None = None) -> str:
  base = summary['baseline']
  seeds = summary['seeds']
  metrics = summary.get('metrics') or list(metrics or [])
  prov = summary.get('provenance') or {}
  lines = [f'# {title}', '',
           f'{len(seeds)} seed(s) per variant ({", ".join(map(str, seeds))}); baseline `{base}`.',
           f'Convention: {summary["convention"]}.', '']
  if prov:
    lines += [f'Code {prov.get("commit") or "?"}{" (uncommitted changes)" if prov.get("dirty") else ""}'
              f', mmjax {prov.get("mmjax_version")}, {prov.get("start")} – {prov.get("end")}; '
              f'`{prov.get("command")}`', '']
  lines += ['## Values (mean ± std, 95% interval, n)', '',
            '| variant | steps | ' + ' | '.join(f'`{m}`' for m in metrics) + ' |',
            '|---|---|' + '---|' * len(metrics)]
  for v, entry in summary['variants'].items():
    cells = [_value_cell(entry['metrics'][m]) for m in metrics]
    lines.append(f'| {v} | {entry.get("total_steps", "–")} | ' + ' | '.join(cells) + ' |')
  if summary.get('missing'):
    lines += ['', 'Missing (asked for, never reported): ' + '; '.join(
        f'`{x["metric"]}` of {x["variant"]}' for x in summary['missing']) + '.']
  lines += ['', f'## Paired difference from `{base}` (mean, 95% interval)', '',
            '| variant | ' + ' | '.join(f'`{m}`' for m in metrics) + ' |',
            '|---|' + '---|' * len(metrics)]
  for v, entry in summary['variants'].items():
    if v == base:
      continue
    cells = []
    for m in metrics:
      d = entry['difference_from_baseline'][m]
      if 'missing' in d:
        cells.append('missing')
        continue
      mark = ''
      if d['ci95'] is not None and (d['ci95'][0] > 0 or d['ci95'][1] < 0):
        mark = ' *'
      cells.append(f'{_signed(d["mean"])} {_interval(d["ci95"], signed=True)}{mark}')
    lines.append(f'| {v} | ' + ' | '.join(cells) + ' |')
  effect = next((d['power']['effect'] for e in summary['variants'].values()
                 for d in e.get('difference_from_baseline', {}).values()
                 if 'effect' in (d.get('power') or {})), None)
  pilot = f' seeds for {effect:g} |' if effect is not None else ''
  lines += ['', '`*`: the 95% interval of the paired difference excludes 0.', '',
            '## Tests and verdicts', '',
            '| variant | metric | paired p | Holm p | Welch 95% | TOST p | detectable |' + pilot +
            ' verdict |', '|---|---|---|---|---|---|---|' + ('---|' if pilot else '') + '---|']
  for v, entry in summary['variants'].items():
    for m, d in entry.get('difference_from_baseline', {}).items():
      if 'missing' in d:
        continue
      w = d.get('welch')
      eq = d.get('equivalence')
      power = d.get('power') or {}
      need = f' {power.get("seeds_needed", "–")} |' if pilot else ''
      lines.append(f'| {v} | `{m}` | {_p(d.get("p"))} | {_p(d.get("p_holm"))} | '
                   f'{_interval(w["ci95"], signed=True) if w else "–"} | '
                   f'{_p(eq["p"]) if eq else "–"} | {_num(power.get("detectable_effect"))} |'
                   f'{need} {d.get("verdict", "")} |')
  timing = summary.get('timing')
  if timing:
    lines += ['', '## Step time, measured apart (timing pass, one variant at a time)', '',
              '| variant | seconds/step (mean ± std, 95% interval, n) | difference (Welch 95%) |',
              '|---|---|---|']
    for v, t in timing.get('variants', {}).items():
      w = t.get('welch')
      lines.append(f'| {v} | {_value_cell(t["step_s"])} | '
                   f'{_interval(w["ci95"], signed=True) if w else "–"} |')
  lines.append('')
  return '\n'.join(lines)


def write_summary(sweep_dir: str, summary: dict, markdown: str) -> tuple[str, str]:
  paths = (os.path.join(sweep_dir, 'summary.json'), os.path.join(sweep_dir, 'summary.md'))
  for path, text in zip(paths, (json.dumps(summary, indent=2, sort_keys=False) + '\n', markdown)):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.write(text)
    os.replace(tmp, path)
  return paths
