"""Loader benchmark: examples/s of each task's input pipeline versus what the train step
consumes, side by side, for one config (default: the demo).

  python -m tools.bench_data                              # configs/demo.py
  python -m tools.bench_data --config=configs/demo.py --batches=30 --out=bench_data.json
  python -m tools.bench_data --config=configs/photos.py:photos --config.data_dir=DATA_DIR \\
      --steps=0                       # real-size photos (tools/make_photo_corpus.py)
  python -m tools.bench_data --real [--seconds=8 --workers=2]   # tools/bench_data_real.py
  python -m tools.bench_data --decoders                         # JPEG / video / audio decoders

`headroom` = loader examples/s ÷ step examples/s: above 1 the loader keeps up; the loop's
`input_wait_fraction` in metrics.jsonl is the in-run measure of the same thing. Each task's
loader is measured with the config's data settings as they are (the shipped defaults unless the
config changes them) and again with `cache_mb=0` (read from disk every time), each in a fresh
process, with that process's peak resident memory and the seconds it took to open the split
(a cached split is read into memory then). `--steps=0` skips the step timing (no compile).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time


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
    return _bench(config_lib.load_config(args.config, overrides), args, overrides)
  return cli.run(run)


def _loader(args) -> dict:
  """In a fresh process: examples/s of one task's train iterator, its set-up seconds and the
  process's peak resident memory (MiB)."""
  config_arg, overrides, index, cache_mb, batches = args
  from mmjax import config as config_lib
  from mmjax.core.tasks import task_signatures
  from mmjax.data import pipeline
  config = config_lib.load_config(config_arg, overrides)
  if cache_mb is not None:
    config.data.cache_mb = float(cache_mb)
  task = task_signatures(config)[index]
  start = time.perf_counter()
  it = pipeline.make_train_iterator(task, config, seed=index)
  setup = time.perf_counter() - start
  loader = pipeline.measure_throughput(it, num_batches=batches)
  it.close()
  return {'examples_per_s': loader['examples_per_s'], 'setup_s': setup,
          'cache_mb': float(config.data.cache_mb),
          'rss_peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure_loader(config_arg: str, overrides, index: int, batches: int, cache_mb=None) -> dict:
  """`_loader` in a spawned process (so each measurement has its own peak memory)."""
  with multiprocessing.get_context('spawn').Pool(1) as pool:
    return pool.apply(_loader, ((config_arg, list(overrides), index, cache_mb, batches),))


def _bench(config, args, overrides=()) -> int:
  from mmjax.core.tasks import task_signatures
  rows = []
  for i, task in enumerate(task_signatures(config)):
    row = {'task': task.signature_name}
    shipped = measure_loader(args.config, overrides, i, args.batches)
    uncached = measure_loader(args.config, overrides, i, args.batches, cache_mb=0)
    row.update({'loader_examples_per_s': shipped['examples_per_s'],
                'rss_peak_mb': shipped['rss_peak_mb'], 'setup_s': shipped['setup_s'],
                'cache_mb': shipped['cache_mb'],
                'uncached_examples_per_s': uncached['examples_per_s'],
                'uncached_rss_peak_mb': uncached['rss_peak_mb'],
                'vs_uncached': shipped['examples_per_s'] / uncached['examples_per_s']})
    if args.steps:
      consumed = step_rate(config, task, args.steps)
      row.update({'step_examples_per_s': consumed,
                  'headroom': shipped['examples_per_s'] / consumed})
    rows.append(row)
  print(f'{"task":44}{"cache_mb":>9}{"ex/s":>8}{"RSS MB":>8}{"open s":>8}{"| cache 0 ex/s":>15}'
        f'{"RSS MB":>8}{"ratio":>7}{"step ex/s":>11}{"headroom":>10}')
  for r in rows:
    step = (f'{r["step_examples_per_s"]:>11.0f}{r["headroom"]:>9.1f}x' if 'headroom' in r
            else '')
    print(f'{r["task"][:43]:44}{r["cache_mb"]:>9.0f}{r["loader_examples_per_s"]:>8.1f}'
          f'{r["rss_peak_mb"]:>8.0f}{r["setup_s"]:>8.1f}{r["uncached_examples_per_s"]:>15.1f}'
          f'{r["uncached_rss_peak_mb"]:>8.0f}{r["vs_uncached"]:>7.2f}' + step)
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(rows, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
