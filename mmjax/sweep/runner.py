"""The sweep command's body: plan, run (or print) every variant x seed, then summarise."""

from __future__ import annotations

import difflib
import os
import shlex
import sys
import time

from mmjax import config as config_lib
from mmjax.sweep import collect, execute, plots, summary as summary_lib
from mmjax.sweep.spec import Run, Sweep, baseline_of, load_sweep, plan_runs


def _say(text: str) -> None:
  print(text, flush=True)


def _command(argv: list[str]) -> str:
  return ' '.join(shlex.quote(a) for a in ['python', *argv[1:]])


def sweep_argv(args, overrides) -> list[str]:
  argv = [sys.executable, '-m', 'mmjax.sweep', f'--sweep={args.sweep}', f'--workdir={args.workdir}',
          f'--seeds={args.seeds}']
  return argv + [f'--config.{k}={v}' for k, v in overrides]


def print_commands(runs: list[Run], args, overrides) -> None:
  """One self-contained job per unfinished run (train, evaluate, mark done), then the command
  that writes the summary once every job has finished."""
  base = sweep_argv(args, overrides)
  for run in runs:
    if execute.done_record(run) is not None:
      continue
    print(f'# {run.name}: {_command(execute.train_argv(run))} && '
          f'{_command(execute.eval_argv(run))}')
    print(_command(base + [f'--only={run.name}']))
  print('# after every job above: the summary')
  print(_command(base))


def _headline(record: dict, metrics: list[str]) -> str:
  parts = []
  for m in metrics[:3]:
    v = record['metrics'].get(m)
    if v is not None:
      parts.append(f'{m}={v:.4g}')
  return ', '.join(parts)


def _missing_metrics(records: list[dict], metrics: list[str]) -> list[str]:
  names = set().union(*(r['metrics'] for r in records)) if records else set()
  out = []
  for m in metrics:
    if m not in names:
      close = difflib.get_close_matches(m, sorted(names), n=3, cutoff=0.5)
      out.append(f'{m} (closest: {", ".join(close) or "none"})')
  return out


def summarise(sweep: Sweep, runs: list[Run], sweep_dir: str, title: str) -> dict:
  """Reads the done records, writes summary.json / summary.md / plots; returns the summary."""
  records = [execute.done_record(r) for r in runs]
  records = [r for r in records if r is not None]
  metrics = list(sweep.metrics)
  variants = list(sweep.variants)
  summary = summary_lib.build_summary(records, variants, metrics, baseline_of(sweep))
  md = summary_lib.format_markdown(summary, title, metrics)
  json_path, md_path = summary_lib.write_summary(sweep_dir, summary, md)
  plots.plot_metrics(summary, metrics, os.path.join(sweep_dir, 'plots', 'metrics.png'))
  per_variant = {v: [collect.read_rows(r.workdir) for r in runs if r.variant == v]
                 for v in variants}
  plots.plot_loss_curves(per_variant, os.path.join(sweep_dir, 'plots', 'loss_vs_examples.png'))
  missing = _missing_metrics(records, metrics)
  if missing:
    _say('warning: no run reported these metrics: ' + '; '.join(missing))
  _say(md)
  _say(f'wrote {json_path}, {md_path} and {os.path.join(sweep_dir, "plots")}/')
  return summary


def run_sweep(args, overrides) -> int:
  sweep, config_arg = load_sweep(args.sweep)
  runs = plan_runs(sweep, config_arg, args.workdir, args.seeds, overrides)
  execute.check_consistent(runs)
  if args.only:
    chosen = [r for r in runs if r.name == args.only]
    if not chosen:
      raise config_lib.ConfigError(f'--only={args.only} is not a run of this sweep; the runs are '
                                   f'{", ".join(r.name for r in runs[:6])}...')
  else:
    chosen = runs
  if args.print_commands:
    print_commands(chosen, args, overrides)
    return 0
  metrics = list(sweep.metrics)
  _say(f'sweep {args.sweep}: {len(sweep.variants)} variant(s) x {args.seeds} seed(s) = '
       f'{len(runs)} runs in {args.workdir} (baseline {baseline_of(sweep)})')
  start = time.monotonic()
  executor = execute.Executor(args.workdir, jobs=args.jobs, devices_per_job=args.devices_per_job,
                              say=_say)

  def on_done(run: Run, record: dict, label: str) -> None:
    t = record['metrics']
    _say(f'{label} {run.name}: done (train {t.get("time/train_seconds", 0):.0f} s, eval '
         f'{t.get("time/eval_seconds", 0):.0f} s); {_headline(record, metrics)}')

  try:
    executor.run_all(chosen, on_done)
  except execute.RunFailed as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  except execute.Stopped as e:
    print(f'stopped: {e}', file=sys.stderr)
    return 130
  _say(f'all runs of this command finished in {time.monotonic() - start:.0f} s.')
  unfinished = [r for r in runs if execute.done_record(r) is None]
  if unfinished:
    _say(f'{len(unfinished)} of {len(runs)} runs are not finished yet (e.g. {unfinished[0].name}); '
         'the summary is written when all are.')
    return 0
  title = os.path.splitext(os.path.basename(args.sweep))[0]
  summarise(sweep, runs, args.workdir, title)
  return 0
