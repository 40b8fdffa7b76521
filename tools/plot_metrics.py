"""Loss and metric curves of a run: `DIR/metrics.jsonl` -> `DIR/plots/<metric>.png`.

  python -m tools.plot_metrics --workdir=runs/demo

One figure per numeric metric in the records (loss, learning_rate, examples_per_sec, ...), with one
curve per task.
"""

from __future__ import annotations

import argparse
import sys

from mmjax.train import curves


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m tools.plot_metrics', description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True, help='run directory holding metrics.jsonl')
  args = parser.parse_args(argv)
  try:
    paths = curves.plot_workdir(args.workdir)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  for p in paths:
    print(p)
  return 0


if __name__ == '__main__':
  sys.exit(main())
