"""`python -m tools.goodput --workdir=DIR`: the job's goodput across every attempt.

Reads `DIR/goodput/*.json` (one record per attempt, written by the training loop; a killed
attempt counts up to its last write) and prints where the wall time went: productive steps,
steps lost to restarts, input wait, compilation, restore, checkpoints, evaluation, start-up.
"""

from __future__ import annotations

import argparse
import sys

from mmjax import paths
from mmjax.train import goodput


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m tools.goodput', description=__doc__)
  parser.add_argument('--workdir', required=True, help='a training run directory (or gs://...)')
  args = parser.parse_args(argv)
  records = goodput.read_attempts(args.workdir)
  if not records:
    print(f'error: {paths.join(args.workdir, goodput.LEDGER_DIR)} holds no goodput records: '
          'point --workdir at a training run.', file=sys.stderr)
    return 2
  print(goodput.format_table(goodput.job_summary(args.workdir)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
