"""`python -m mmjax.evaluate.captioning --config=configs/coca.py --workdir=DIR [--beam_size=K]`

Decodes captions (greedy; beam search with `--beam_size` > 1; `--step=N` picks a checkpoint) for
every test example of each `config.evaluation.datasets` entry whose modality the model captions
(CoCa), and reports, on labelled datasets with digit class names (`mmjax_digits`), the share of
captions that name the right digit (and no other), and BLEU-4 and CIDEr-D (pycocoevalcap's
scorers) against the dataset's own caption of each example. Captions are tokenized by
lowercasing and splitting into words (not COCO's Java PTB tokenizer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax

from mmjax import cli
from mmjax import config as config_lib
from mmjax.core import partitioning
from mmjax.data import pipeline
from mmjax.evaluate.caption_metrics import caption_dataset, config_entries
from mmjax.evaluate.errors import EvalError
from mmjax.evaluate.restore import restore_params
from mmjax.train import state as state_lib


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m mmjax.evaluate.captioning',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='configs/<name>.py[:arg] of the run')
  parser.add_argument('--workdir', required=True, help='run directory holding checkpoints/')
  parser.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  parser.add_argument('--beam_size', type=int, default=1, help='1: greedy; K > 1: beam search')

  def run():
    args, overrides = cli.parse(parser, argv)
    config = config_lib.load_config(args.config, overrides)
    if args.beam_size < 1:
      print(f'error: --beam_size must be >= 1 (1 = greedy), got {args.beam_size}.', file=sys.stderr)
      return 2
    mesh = partitioning.make_mesh(config.mesh)
    try:
      step, graphdef, params = restore_params(config, args.workdir, mesh, args.step)
      if not state_lib.merge(graphdef, params).spec.captions:
        raise EvalError('the model has no caption decoder: train with a task that sets '
                        "caption=MODALITY (e.g. configs/coca.py).")
      tokenizer = pipeline.load_tokenizer(config)
      rep = {name: caption_dataset(config, graphdef, params, mesh, cfg, tokenizer, args.beam_size)
             for name, cfg in config_entries(config)}
    except EvalError as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
    if jax.process_index() == 0:
      tag = f'_beam{args.beam_size}' if args.beam_size > 1 else ''
      path = os.path.join(args.workdir, 'eval', f'captions_step_{step}{tag}.json')
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, 'w') as f:
        json.dump({'step': step, 'beam_size': args.beam_size, 'datasets': rep}, f, indent=2)
      for name, mods in rep.items():
        for m, r in mods.items():
          print(f'{name}/{m}: right-digit share {r["right_digit_share"]:.3f}, BLEU-4 '
                f'{r["bleu4"]:.3f}, CIDEr {r["cider"]:.3f} over {r["count"]} captions')
          for s in r['samples'][:4]:
            print(f'  label {s["label"]}: {s["caption"]!r}')
      print(f'wrote {path}')
    return 0
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
