"""Published CLIP-family checkpoints as mmjax exports.

    python -m tools.import_weights open_clip --config=open_clip_config.json \
        --weights=open_clip_model.safetensors --output=OUT
    python -m tools.import_weights hf_clip --input=DIR --output=OUT     # transformers CLIPModel
    python -m tools.import_weights hf_siglip --input=DIR --output=OUT   # transformers SiglipModel

OUT is an mmjax export (config.json, model.safetensors, tokenizer, export_report.json, model
card; mmjax/export/import_run.py) that `mmjax.export.load.load_model(OUT)`,
`mmjax-evaluate --workdir=OUT`, `--config.init_from=OUT` and `tools.upcycle` read. Weights are
read with safetensors only: a .bin/.pt file is refused with the one-line conversion, and an
option the importer cannot reproduce is refused by name. Exit 0: imported; 2: bad input
(nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys

from mmjax import cli
from mmjax.export import import_run, published
from mmjax.export.errors import ExportError

SOURCES = ('open_clip', 'hf_clip', 'hf_siglip')


def read(args) -> published.Imported:
  if args.source == 'open_clip':
    if not args.config or not args.weights:
      raise ExportError('open_clip needs --config=open_clip_config.json (or a model_configs '
                        'JSON) and --weights=FILE.safetensors.')
    return published.read_open_clip(args.config, args.weights)
  if not args.input:
    raise ExportError(f'{args.source} needs --input=DIR, a transformers folder (config.json + '
                      'model.safetensors).')
  if args.source == 'hf_clip':
    return published.read_hf_clip(args.input)
  return published.read_hf_siglip(args.input)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m tools.import_weights',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('source', choices=SOURCES, help='checkpoint format')
  parser.add_argument('--config', default='', help='open_clip: model config JSON')
  parser.add_argument('--weights', default='', help='open_clip: weights .safetensors')
  parser.add_argument('--input', default='', help='hf_clip / hf_siglip: transformers folder')
  parser.add_argument('--output', required=True, help='export directory (created)')
  parser.add_argument('--overwrite', action='store_true', help='replace an existing export')

  def run():
    args, overrides = cli.parse(parser, argv)
    if overrides:
      print('error: --config.* overrides do not apply to an import.', file=sys.stderr)
      return 2
    try:
      imported = read(args)
      spiece = os.path.join(args.input, 'spiece.model') if args.source == 'hf_siglip' else None
      import_run.import_checkpoint(imported, args.output, overwrite=args.overwrite,
                                   tokenizer_file=spiece)
    except ExportError as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
    return 0
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
