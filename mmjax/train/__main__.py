"""`python -m mmjax.train --config=demo --workdir=DIR [--config.key=value ...] [--jax_debug_nans]`

Trains (or resumes from the latest checkpoint in DIR) and writes DIR/config.json,
DIR/metrics.jsonl, DIR/tensorboard/, DIR/plots/ and DIR/checkpoints/, and ends with a summary.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax

from mmjax import cli
from mmjax import config as config_lib
from mmjax.evaluate import one_model
from mmjax.train import distributed, run_summary
from mmjax.train.loop import train


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m mmjax.train', description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='a config file or the name of a shipped '
                      'config (demo, imp_base, ...), with an optional :arg')
  parser.add_argument('--workdir', required=True, help='run directory (created; resumed if it '
                      'holds checkpoints)')

  def run():
    args, overrides = cli.parse(parser, argv)
    config = config_lib.load_config(args.config, overrides)
    distributed.initialize_from_env()
    started = time.perf_counter()
    result = train(config, args.workdir, evaluate=one_model.evaluate_params)
    if jax.process_index() == 0:
      print(run_summary.summarize(args.workdir, config.total_steps, result['step'],
                                  time.perf_counter() - started, result.get('goodput')),
            flush=True)
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
