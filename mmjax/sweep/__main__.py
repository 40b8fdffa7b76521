"""`python -m mmjax.sweep --sweep=configs/sweeps/NAME.py --workdir=DIR --seeds=N [--config.k=v ...]`

Trains and evaluates every variant x seed of the sweep in DIR/VARIANT/seed_S (finished runs are
skipped, interrupted ones resume from their checkpoints), then writes DIR/summary.json,
DIR/summary.md and DIR/plots/. `--print_commands` prints one job per run for a scheduler instead.
"""

from __future__ import annotations

import argparse
import sys

from mmjax import cli
from mmjax.config import ConfigError
from mmjax.sweep.runner import run_sweep


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m mmjax.sweep', description=__doc__.split('\n')[0])
  parser.add_argument('--sweep', required=True, help='configs/sweeps/<name>.py')
  parser.add_argument('--workdir', required=True, help='sweep directory (runs, summary, plots)')
  parser.add_argument('--seeds', type=int, default=3, help='seeds per variant (0..N-1)')
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
    if args.jobs < 1 or args.devices_per_job < 0:
      raise ConfigError('--jobs must be >= 1 and --devices_per_job >= 0.')
    return run_sweep(args, overrides)
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
