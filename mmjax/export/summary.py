"""The human-readable summary `export_run` prints: where each artifact is, and parity."""

from __future__ import annotations

import os


def _num(x, fmt: str) -> str:
  return '-' if x is None else format(x, fmt)


def format_report(report: dict) -> str:
  """A few lines: artifacts with their paths, then one parity row per format and modality."""
  out = report['output']
  lines = [f'exported step {report["step"]} of {report["workdir"]} ({report["dtype"]}) to {out}']
  for fmt, rel in report['files'].items():
    lines.append(f'  {fmt:<12} {os.path.join(out, rel)}')
  if report.get('tokenizer'):
    lines.append(f'  {"tokenizer":<12} {os.path.join(out, report["tokenizer"])}')
  par = report['parity']
  lines.append(f'parity on {par["batch"]["source"]} ({par["batch"]["rows"]} examples), '
               f'tolerance max|diff| <= {par["tolerance"]["max_abs_diff"]:g}, '
               f'cosine >= {par["tolerance"]["min_cosine"]:g}:')
  lines.append(f'  {"format":<12} {"modality":<8} {"max|diff|":>10} {"min cos":>10} '
               f'{"zs top1":>8} {"agree":>6}  ok')
  for fmt, res in par['formats'].items():
    zs = res.get('zero_shot', {})
    for m, r in res.items():
      if m in ('pass', 'zero_shot'):
        continue
      z = zs.get(m, {})
      lines.append(f'  {fmt:<12} {m:<8} {_num(r["max_abs_diff"], ".2e"):>10} '
                   f'{_num(r["min_cosine"], ".7f"):>10} {_num(z.get("top1"), ".3f"):>8} '
                   f'{_num(z.get("agreement"), ".3f"):>6}  {"yes" if r["pass"] else "NO"}')
  lines.append(f'report: {os.path.join(out, "export_report.json")}')
  return '\n'.join(lines)
