"""MobileCLIP dataset reinforcement: stored teacher embeddings and augmentations.

  python -m tools.reinforce_data --teacher=runs/demo/export --dataset=mmjax_digits \
      --output=runs/reinforced [--augmentations=4] [--splits=train] [--data_dir=DIR]

Runs one or more teacher exports (comma-separated: an ensemble, averaged) over the dataset's
splits and writes OUTPUT/<dataset>_reinforced/1.0.0/: every original feature plus `aug_crop`,
`aug_flip`, `teacher_image`, `teacher_text` (mmjax/data/reinforced.py). Train on it with
configs/mobileclip.py and `--config.data_dir=OUTPUT`. Bad input (a missing export, an unknown
dataset, an existing output) ends with one sentence and exit code 2, with nothing written.
"""

from __future__ import annotations

import argparse
import sys

from mmjax import cli
from mmjax.prepare.reinforce import reinforce_dataset


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m tools.reinforce_data',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--teacher', required=True, help='export dir(s), comma-separated')
  parser.add_argument('--dataset', required=True, help='a dataset name mmjax reads')
  parser.add_argument('--output', required=True, help='data dir to write the copy into')
  parser.add_argument('--splits', default='train', help='comma-separated splits to copy')
  parser.add_argument('--augmentations', type=int, default=4, help='stored crops per example')
  parser.add_argument('--crop_scale', default='0.7,1.0', help='crop area range min,max')
  parser.add_argument('--flip', action='store_true', help='also store random mirror flips')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--data_dir', default=None, help='where the dataset is prepared')

  def run():
    args = parser.parse_args(argv)
    report = reinforce_dataset(
        [t for t in args.teacher.split(',') if t], args.dataset, args.output,
        splits=tuple(s for s in args.splits.split(',') if s), augmentations=args.augmentations,
        crop_scale=tuple(float(v) for v in args.crop_scale.split(',')), flip=args.flip,
        seed=args.seed, data_dir=args.data_dir)
    temps = ', '.join(f'{t:.4f}' for t in report['teacher_temperatures'] if t is not None)
    print(f"wrote {args.output}/{report['name']}: {report['splits']} examples, "
          f"{report['augmentations']} augmentations, teacher embeddings of "
          f"{', '.join(report['modalities'])} ({report['embed_dim']}-d); teacher temperature(s) "
          f'{temps or "n/a"}', flush=True)
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
