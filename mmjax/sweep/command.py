"""The sweep command's body: plan, run (or print) every variant x seed, then summarise."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shlex
import subprocess
import sys
import time

from mmjax import config as config_lib
from mmjax.sweep import collect, plots, provenance, stats, summary as summary_lib
from mmjax.sweep import one_run
from mmjax.sweep.spec import (Run, Sweep, baseline_of, grid_sweep, interleave, load_sweep,
                              parse_vary, plan_runs, split_values)

DEFAULT_VARY_METRICS = ('zero_shot/*/top1', 'linear_probe/*/top1', 'train/loss')


def _say(text: str) -> None:
  print(text, flush=True)


def _command(argv: list[str]) -> str:
  return ' '.join(shlex.quote(a) for a in ['python', *argv[1:]])


def sweep_argv(args, overrides) -> list[str]:
  argv = [sys.executable, '-m', 'mmjax.sweep']
  if args.sweep:
    argv.append(f'--sweep={args.sweep}')
  else:
    argv += [f'--config={args.config}', *[f'--vary={v}' for v in args.vary]]
    if args.metrics:
      argv.append(f'--metrics={args.metrics}')
  argv += [f'--workdir={args.workdir}', f'--seeds={args.seeds}']
  for name, default in (('seed_offset', 0), ('order_seed', 0), ('eval_steps', ''),
                        ('margin', None), ('bench', 0), ('bench_steps', 10)):
    value = getattr(args, name, default)
    if value != default:
      argv.append(f'--{name}={value}')
  if getattr(args, 'pilot', False):
    argv += ['--pilot', f'--effect={args.effect}']
  return argv + [f'--config.{k}={v}' for k, v in overrides]


def print_commands(runs: list[Run], args, overrides) -> None:
  """One self-contained job per unfinished run (train, evaluate, mark done), then the command
  that writes the summary once every job has finished."""
  base = sweep_argv(args, overrides)
  for run in runs:
    if one_run.done_record(run) is not None:
      continue
    print(f'# {run.name}: {_command(one_run.train_argv(run))} && '
          f'{_command(one_run.eval_argv(run))}')
    print(_command(base + [f'--only={run.name}']))
  print('# after every job above: the summary')
  print(_command(base))


def _headline(record: dict, metrics: list[str]) -> str:
  parts = []
  for m in collect.expand(metrics, record['metrics'])[:3]:
    v = record['metrics'].get(m)
    if v is not None:
      parts.append(f'{m}={v:.4g}')
  return ', '.join(parts)


def summarise(sweep: Sweep, runs: list[Run], sweep_dir: str, title: str, args=None,
              timing: dict | None = None) -> dict:
  """Reads the done records, writes summary.json / summary.md / plots; returns the summary."""
  records = [one_run.done_record(r) for r in runs]
  records = [r for r in records if r is not None]
  variants = list(sweep.variants)
  margin = getattr(args, 'margin', None)
  effect = args.effect if getattr(args, 'pilot', False) else None
  prov = {**provenance.code_state(), 'command': provenance.command(getattr(args, 'argv', None)),
          'start': min((r.get('started') or '' for r in records), default=None) or None,
          'end': provenance.now(),
          'run_commits': sorted({r.get('commit') or '?' for r in records})}
  summary = summary_lib.build_summary(records, variants, list(sweep.metrics), baseline_of(sweep),
                                      margin=margin, effect=effect, provenance=prov,
                                      timing=timing)
  metrics = summary['metrics']
  md = summary_lib.format_markdown(summary, title)
  json_path, md_path = summary_lib.write_summary(sweep_dir, summary, md)
  plots.plot_metrics(summary, metrics, os.path.join(sweep_dir, 'plots', 'metrics.png'))
  plots.plot_eval_curves(summary, os.path.join(sweep_dir, 'plots', 'curves.png'))
  per_variant = {v: [collect.read_rows(r.workdir) for r in runs if r.variant == v]
                 for v in variants}
  plots.plot_loss_curves(per_variant, os.path.join(sweep_dir, 'plots', 'loss_vs_examples.png'))
  if summary['missing']:
    _say('warning: metrics asked for but never reported: ' + '; '.join(
        f'{x["metric"]} of {x["variant"]} (closest: {", ".join(x["closest"]) or "none"})'
        for x in summary['missing']))
  _say(md)
  _say(f'wrote {json_path}, {md_path} and {os.path.join(sweep_dir, "plots")}/')
  return summary


def bench_pass(runs: list[Run], baseline: str, sweep_dir: str, repeats: int, steps: int,
               order_seed: int = 0) -> dict:
  """Step time of each variant measured apart: `tools.bench_step --config=...` in its own
  process, one variant at a time, `repeats` rounds in a seeded random order per round (results
  in DIR/timing/, kept: a rerun measures only what is missing)."""
  first = {}
  for r in runs:
    first.setdefault(r.variant, r)
  out_dir = os.path.join(sweep_dir, 'timing')
  os.makedirs(out_dir, exist_ok=True)
  times: dict[str, list[float]] = {v: [] for v in first}
  for rep in range(repeats):
    order = list(first)
    random.Random(order_seed * 7919 + rep).shuffle(order)
    for v in order:
      run = first[v]
      path = os.path.abspath(os.path.join(out_dir, f'{v}.{rep}.json'))
      if not os.path.exists(path):
        file, sep, arg = run.config_arg.partition(':')
        argv = [sys.executable, '-m', 'tools.bench_step',
                f'--config={os.path.abspath(file)}{sep}{arg}', f'--steps={steps}',
                f'--out={path}', *run.override_flags()]
        _say(f'timing pass {rep + 1}/{repeats}: {v}')
        with open(os.path.join(out_dir, 'bench.log'), 'ab') as log:
          code = subprocess.run(argv, cwd=provenance.ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONUNBUFFERED='1')).returncode
        if code != 0:
          raise one_run.RunFailed(f'timing pass of {v} exited with code {code}; see '
                                  f'{out_dir}/bench.log.')
      with open(path) as f:
        times[v].append(float(json.load(f)['step_s']))
  result = {'method': f'tools.bench_step --config per variant, {steps} timed steps after a '
            f'warm-up, median per process; {repeats} round(s), variants in a random order per '
            'round, nothing else of the sweep running', 'variants': {}}
  for v, xs in times.items():
    entry = {'step_s': stats.describe(xs), 'per_repeat': xs}
    if v != baseline:
      entry['welch'] = stats.welch(xs, times[baseline])
    result['variants'][v] = entry
  return result


def _check_eval_steps(runs: list[Run], eval_steps: list[int]) -> None:
  for run in runs:
    bad = [s for s in eval_steps if s < run.total_steps and s % run.checkpoint_every]
    if bad:
      raise config_lib.ConfigError(
          f'--eval_steps {bad} are not checkpoint steps of {run.name} (checkpoint_every='
          f'{run.checkpoint_every}): pick multiples of {run.checkpoint_every}.')


def build_sweep(args) -> tuple[Sweep, str, str]:
  """(sweep, base config argument, title) from --sweep or --config/--vary."""
  if bool(args.sweep) == bool(args.config):
    raise config_lib.ConfigError('pass either --sweep=FILE.py or --config=FILE.py[:arg] with '
                                 '--vary=KEY=A,B (not both, not neither).')
  if args.sweep:
    if args.vary or args.metrics:
      raise config_lib.ConfigError('--vary and --metrics go with --config, not --sweep: a sweep '
                                   'file names its variants and metrics.')
    sweep, config_arg = load_sweep(args.sweep)
    return sweep, config_arg, os.path.splitext(os.path.basename(args.sweep))[0]
  if not args.vary:
    raise config_lib.ConfigError('--config needs at least one --vary=KEY=A,B[,...] to compare.')
  file = args.config.partition(':')[0]
  if not os.path.isfile(file):
    raise config_lib.ConfigError(f'config file {file!r} does not exist: pass '
                                 '--config=configs/<name>.py[:arg].')
  given = args.metrics or ','.join(DEFAULT_VARY_METRICS)
  metrics = tuple(m.strip() for m in split_values(given) if m.strip())
  sweep = grid_sweep(args.config, parse_vary(args.vary), metrics)
  return sweep, args.config, ' x '.join(v.split('=')[0] for v in args.vary)


def run_sweep(args, overrides) -> int:
  sweep, config_arg, title = build_sweep(args)
  eval_steps = sorted({int(x) for x in str(args.eval_steps or '').split(',') if x.strip()})
  if any(s < 1 for s in eval_steps):
    raise config_lib.ConfigError(f'--eval_steps={args.eval_steps}: give positive step numbers.')
  if eval_steps:  # every checkpoint kept, so each eval step can be evaluated after training
    sweep = dataclasses.replace(sweep, overrides={
        **sweep.overrides,
        'keep_checkpoints': lambda c: max(c.keep_checkpoints,
                                          c.total_steps // c.checkpoint_every + 1)})
  if args.margin is not None and args.margin <= 0:
    raise config_lib.ConfigError(f'--margin={args.margin}: give a positive equivalence margin '
                                 '(in the metric\'s units, e.g. 0.02 for 2 points of top-1).')
  if args.pilot and not args.effect > 0:
    raise config_lib.ConfigError(f'--effect={args.effect}: give the positive target effect the '
                                 'pilot sizes the seeds for (e.g. 0.03).')
  runs = plan_runs(sweep, config_arg, args.workdir, args.seeds, overrides, args.seed_offset)
  _check_eval_steps(runs, eval_steps)
  one_run.check_consistent(runs)
  if args.only:
    chosen = [r for r in runs if r.name == args.only]
    if not chosen:
      raise config_lib.ConfigError(f'--only={args.only} is not a run of this sweep; the runs are '
                                   f'{", ".join(r.name for r in runs[:6])}...')
  else:
    chosen = interleave(runs, args.order_seed)
  one_run.check_fresh(chosen, args.rerun_stale, _say)
  if args.print_commands:
    print_commands(chosen, args, overrides)
    return 0
  metrics = list(sweep.metrics)
  _say(f'sweep {title}: {len(sweep.variants)} variant(s) x {args.seeds} seed(s) = '
       f'{len(runs)} runs in {args.workdir} (baseline {baseline_of(sweep)}; runs seed by seed, '
       f'variants in a random order)')
  start = time.monotonic()
  executor = one_run.Executor(args.workdir, jobs=args.jobs, devices_per_job=args.devices_per_job,
                              say=_say, eval_steps=eval_steps,
                              captions=collect.wants_captions(metrics))

  def on_done(run: Run, record: dict, label: str) -> None:
    t = record['metrics']
    _say(f'{label} {run.name}: done (train {t.get("time/train_seconds", 0):.0f} s, eval '
         f'{t.get("time/eval_seconds", 0):.0f} s); {_headline(record, metrics)}')

  try:
    executor.run_all(chosen, on_done)
  except one_run.RunFailed as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  except one_run.Stopped as e:
    print(f'stopped: {e}', file=sys.stderr)
    return 130
  _say(f'all runs of this command finished in {time.monotonic() - start:.0f} s.')
  unfinished = [r for r in runs if one_run.done_record(r) is None]
  if unfinished:
    _say(f'{len(unfinished)} of {len(runs)} runs are not finished yet (e.g. {unfinished[0].name}); '
         'the summary is written when all are.')
    return 0
  timing = None
  if args.bench:
    try:
      timing = bench_pass(runs, baseline_of(sweep), args.workdir, args.bench, args.bench_steps,
                          args.order_seed)
    except one_run.RunFailed as e:
      print(f'error: {e}', file=sys.stderr)
      return 1
  summarise(sweep, runs, args.workdir, title, args, timing)
  return 0
