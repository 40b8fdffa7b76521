"""`python -m mmjax.export --workdir=DIR --output=OUT [--step=N] [--format=all] [--dtype=float32]
[--overwrite]`

Exports DIR's latest (or step N's) checkpoint as a params-only orbax checkpoint, a safetensors
file and/or serialized StableHLO embedding functions (`--format=orbax,safetensors,stablehlo` or
`all`), checks each against the checkpoint and writes OUT/export_report.json. The config is
read from DIR/config.json. Exit 0: exported and matching; 1: parity failed (the export is kept
at OUT.rejected, OUT untouched); 2: bad input (nothing written).
"""

from __future__ import annotations

import argparse
import sys

from mmjax import cli
from mmjax.export.errors import ExportError, ParityError
from mmjax.export.run import export_run
from mmjax.export.hf_clip_run import export_hf_clip_run


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m mmjax.export',
                                   description=__doc__.split('\n\n')[1].replace('\n', ' '))
  parser.add_argument('--workdir', required=True, help='training run directory (config.json, '
                      'checkpoints/)')
  parser.add_argument('--output', required=True, help='export directory (created)')
  parser.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  parser.add_argument('--format', default='all', help='comma-separated: orbax, safetensors, '
                      'stablehlo; or all (default); or hf_clip alone (a transformers CLIPModel '
                      'folder; DIR may also be an export)')
  parser.add_argument('--dtype', default='float32', help='stored parameter dtype: float32 '
                      '(default) or bfloat16')
  parser.add_argument('--overwrite', action='store_true', help='replace an existing export')

  def run():
    args, overrides = cli.parse(parser, argv)
    if overrides:
      print('error: --config.* overrides do not apply: the export uses DIR/config.json as '
            'trained.', file=sys.stderr)
      return 2
    try:
      if args.format == 'hf_clip':   # a transformers CLIPModel folder (mmjax/export/hf_clip.py)
        export_hf_clip_run(args.workdir, args.output, args.step, args.overwrite)
      else:
        export_run(args.workdir, args.output, args.format, args.dtype, args.step, args.overwrite)
    except ExportError as e:
      print(f'error: {e}', file=sys.stderr)
      return 2
    except ParityError as e:
      print(f'parity failed: {e}', file=sys.stderr)
      return 1
    return 0
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
