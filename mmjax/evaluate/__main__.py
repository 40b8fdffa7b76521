"""`python -m mmjax.evaluate --workdir=DIR [--config=demo] [--step=N] [--config.k=v ...]`

Evaluates the latest (or step N's) checkpoint in DIR/checkpoints on `config.evaluation.datasets`:
prints a table, writes DIR/eval/step_<N>.json and the zero-shot confusion matrices
DIR/plots/confusion_<dataset>_<modality>_step_<N>.png.
"""

from __future__ import annotations

import argparse
import sys

from mmjax import cli
from mmjax import config as config_lib


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m mmjax.evaluate',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--config', default=None, help='config file or shipped name[:arg] '
                      '(default: the run\'s DIR/config.json)')
  parser.add_argument('--workdir', required=True, help='run directory holding checkpoints/')
  parser.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')

  def run():
    args, overrides = cli.parse(parser, argv)
    config = (config_lib.load_config(args.config, overrides) if args.config else
              config_lib.load_run_config(args.workdir, overrides))
    from mmjax.train import distributed
    distributed.initialize_from_env()
    import jax
    from mmjax.evaluate import report, runner
    from mmjax.evaluate.errors import EvalError
    try:
      rep = runner.evaluate_checkpoint(config, args.workdir, args.step)
    except EvalError as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
    if jax.process_index() == 0:
      print(report.format_table(rep))
      print(f'wrote {report.report_path(args.workdir, rep["step"])}')
    return 0
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
