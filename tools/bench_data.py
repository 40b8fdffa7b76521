"""Loader benchmark: examples/s of each task's input pipeline versus what the train step
consumes, side by side, for one config (default: the demo).

  python -m tools.bench_data                              # configs/demo.py
  python -m tools.bench_data --config=configs/demo.py --batches=30 --out=bench_data.json
  python -m tools.bench_data --real [--seconds=8 --workers=2]   # tools/bench_data_real.py
  python -m tools.bench_data --decoders                         # JPEG / video / audio decoders

`headroom` = loader examples/s ÷ step examples/s: above 1 the loader keeps up; the loop's
`input_wait_fraction` in metrics.jsonl is the in-run measure of the same thing.
"""

from __future__ import annotations

import argparse
import json
import sys


def step_rate(config, task, steps: int) -> float:
  """Examples/s the compiled train step consumes for `task`, on synthetic inputs."""
  from .bench_step import time_step
  return task.batch_size / time_step(config, task, steps)[0]


def main(argv=None) -> int:
  from mmjax import cli, config as config_lib
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/demo.py')
  parser.add_argument('--batches', type=int, default=30)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--out', default='')
  parser.add_argument('--real', action='store_true', help='224 px JPEG, 16-frame video, 10 s '
                      'audio; with and without worker processes')
  parser.add_argument('--decoders', action='store_true')
  parser.add_argument('--seconds', type=float, default=8.0)
  parser.add_argument('--workers', type=int, default=2)

  def run():
    args, overrides = cli.parse(parser, argv)
    if args.real or args.decoders:
      from . import bench_data_real
      result = bench_data_real.run(args.seconds, args.workers) if args.real else (
          bench_data_real.decoders())
      if args.out:
        with open(args.out, 'w') as f:
          json.dump(result, f, indent=2)
      return 0
    return _bench(config_lib.load_config(args.config, overrides), args)
  return cli.run(run)


def _bench(config, args) -> int:
  from mmjax.data import pipeline
  from mmjax.core.tasks import task_signatures
  rows = []
  for i, task in enumerate(task_signatures(config)):
    it = pipeline.make_train_iterator(task, config, seed=i)
    loader = pipeline.measure_throughput(it, num_batches=args.batches)
    it.close()
    consumed = step_rate(config, task, args.steps)
    rows.append({'task': task.signature_name, 'loader_examples_per_s': loader['examples_per_s'],
                 'step_examples_per_s': consumed,
                 'headroom': loader['examples_per_s'] / consumed})
  print(f'{"task":58}{"loader ex/s":>13}{"step ex/s":>11}{"headroom":>10}')
  for r in rows:
    print(f'{r["task"]:58}{r["loader_examples_per_s"]:>13.0f}{r["step_examples_per_s"]:>11.0f}'
          f'{r["headroom"]:>9.1f}x')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(rows, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
