"""`python -m mmjax.train --config=configs/demo.py --workdir=DIR [--config.key=value ...]`

Trains (or resumes from the latest checkpoint in DIR) and writes DIR/config.json,
DIR/metrics.jsonl, DIR/tensorboard/ and DIR/checkpoints/.
"""

from __future__ import annotations

import argparse
import sys

from mmjax import cli
from mmjax import config as config_lib
from mmjax.evaluate import runner
from mmjax.train import distributed
from mmjax.train.loop import train


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m mmjax.train', description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='configs/<name>.py[:arg]')
  parser.add_argument('--workdir', required=True, help='run directory (created; resumed if it '
                      'holds checkpoints)')

  def run():
    args, overrides = cli.parse(parser, argv)
    config = config_lib.load_config(args.config, overrides)
    distributed.initialize_from_env()
    train(config, args.workdir, evaluate=runner.evaluate_params)
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
