"""`python -m mmjax.sweep --sweep=configs/sweeps/NAME.py --workdir=DIR --seeds=N [--config.k=v ...]`
`python -m mmjax.sweep --config=FILE.py[:arg] --vary=KEY=A,B[,...] [--vary=...] --seeds=N --workdir=DIR`

Trains and evaluates every variant x seed of the sweep in DIR/VARIANT/seed_S, then writes
DIR/summary.json, DIR/summary.md and DIR/plots/. With --config/--vary the variants are the grid
of every combination of the --vary values (the first value of each is the baseline). Runs go seed
by seed, the variants of each seed in a seeded random order. Finished runs are skipped and
interrupted ones resume from their checkpoints, but a run whose recorded resolved config differs
from what the sweep now gives it is stale: the sweep stops (exit 2) naming it and the first
differing key, and `--rerun_stale` trains such runs again. `--print_commands` prints one job per
run for a scheduler instead. Step-time comparisons come from `--bench` (a timing pass per variant,
nothing else running), never from the training runs, which share the machine.
"""

from __future__ import annotations

import argparse
import sys

from mmjax import cli
from mmjax.config import ConfigError
from mmjax.sweep.command import run_sweep


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m mmjax.sweep', description=__doc__.split('\n')[0])
  parser.add_argument('--sweep', default='', help='configs/sweeps/<name>.py[:arg]')
  parser.add_argument('--config', default='',
                      help='with --vary: the base config, configs/<name>.py[:arg]')
  parser.add_argument('--vary', action='append', default=[],
                      help='KEY=A,B[,...]: values of one config key (the first is the baseline); '
                      'several --vary make a grid')
  parser.add_argument('--metrics', default='',
                      help='with --vary: comma-separated metrics (wildcards allowed; default '
                      'zero_shot/*/top1,linear_probe/*/top1,train/loss)')
  parser.add_argument('--workdir', required=True, help='sweep directory (runs, summary, plots)')
  parser.add_argument('--seeds', type=int, default=3, help='seeds per variant')
  parser.add_argument('--seed_offset', type=int, default=0,
                      help='first seed (seeds are OFFSET..OFFSET+N-1): add seeds to a sweep')
  parser.add_argument('--order_seed', type=int, default=0, help='seed of the random run order')
  parser.add_argument('--rerun_stale', action='store_true',
                      help='delete and train again runs whose resolved config is not what the '
                      'sweep now asks (default: stop with exit 2)')
  parser.add_argument('--margin', type=float, default=None,
                      help='equivalence margin in the metric\'s units (TOST), e.g. 0.02')
  parser.add_argument('--pilot', action='store_true',
                      help='estimate the seeds needed to detect --effect from the observed spread')
  parser.add_argument('--effect', type=float, default=0.03,
                      help='target effect of --pilot, in the metric\'s units (default 0.03)')
  parser.add_argument('--eval_steps', default='',
                      help='comma-separated checkpoint steps also evaluated (accuracy-vs-step '
                      'curves with interval bands); every checkpoint is kept')
  parser.add_argument('--bench', type=int, default=0,
                      help='rounds of the timing pass (tools.bench_step per variant, one at a '
                      'time) after the runs; 0: none')
  parser.add_argument('--bench_steps', type=int, default=10, help='timed steps per timing pass')
  parser.add_argument('--jobs', type=int, default=1,
                      help='runs at once, each its own process (default 1: one after another)')
  parser.add_argument('--devices_per_job', type=int, default=0,
                      help='with --jobs on a GPU host: give job slot k the CUDA devices '
                      'k*G..k*G+G-1 (0: every job sees every device)')
  parser.add_argument('--print_commands', action='store_true',
                      help='print one command per unfinished run (for a scheduler) and exit')
  parser.add_argument('--only', default='', help='run only VARIANT/seed_S (what printed jobs do)')

  def run():
    args, overrides = cli.parse(parser, argv)
    args.argv = ['mmjax.sweep', *(sys.argv[1:] if argv is None else argv)]
    if args.jobs < 1 or args.devices_per_job < 0:
      raise ConfigError('--jobs must be >= 1 and --devices_per_job >= 0.')
    if args.bench < 0 or args.bench_steps < 1:
      raise ConfigError('--bench must be >= 0 and --bench_steps >= 1.')
    return run_sweep(args, overrides)
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
