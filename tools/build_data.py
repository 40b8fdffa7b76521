"""Builds an embedded dataset offline.

  python -m tools.build_data digits [--data_dir=DIR]

`digits` writes `mmjax_digits` (ArrayRecord + SentencePiece model) under DIR, else
$TFDS_DATA_DIR, else TFDS's default (~/tensorflow_datasets). Safe to run while other processes
build the same dataset; an existing build is reused.
"""

from __future__ import annotations

import argparse
import os
import time

from mmjax.data.digits import builder as digits_builder

DATASETS = {'digits': digits_builder}


def _dir_size(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('dataset', choices=sorted(DATASETS), help='which embedded dataset')
  parser.add_argument('--data_dir', default=None, help='TFDS data dir (default: TFDS default)')
  args = parser.parse_args(argv)
  module = DATASETS[args.dataset]
  start = time.perf_counter()
  was_built = module.is_built(args.data_dir)
  builder = module.build(args.data_dir)
  seconds = time.perf_counter() - start
  splits = {name: split.num_examples for name, split in builder.info.splits.items()}
  verb = 'found' if was_built else f'built in {seconds:.1f} s'
  print(f'{builder.name} {verb}: {builder.data_dir} ({_dir_size(builder.data_dir) / 2**20:.1f} '
        f'MiB), splits {splits}')


if __name__ == '__main__':
  main()
