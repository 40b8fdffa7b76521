"""`make demo`: the main job end to end on CPU — train -> zero-shot eval -> export.

  python -m mmjax.demo --workdir=runs/demo [--config=demo] [--config.key=value ...]

Builds `mmjax_digits` on first use, trains with AGD over its image/video/audio-text and
classification tasks (resuming if the workdir holds checkpoints), evaluates zero-shot on the
held-out test scans, plots the curves, exports the model, and prints where everything is.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from mmjax import cli
from mmjax import config as config_lib
from mmjax.evaluate import report
from mmjax.evaluate import one_model
from mmjax.evaluate import workdir as eval_run
from mmjax.export import export_run
from mmjax.train import curves
from mmjax.train.loop import train


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m mmjax.demo', description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='demo', help='config file or shipped name[:arg]')
  parser.add_argument('--workdir', default='runs/demo')

  def run():
    args, overrides = cli.parse(parser, argv)
    config = config_lib.load_config(args.config, overrides)
    t0 = time.time()
    print(f'== train: {args.config} -> {args.workdir} ({config.total_steps} steps)', flush=True)
    train(config, args.workdir, evaluate=one_model.evaluate_params)
    t1 = time.time()
    print('== zero-shot evaluation on the held-out test split', flush=True)
    rep = eval_run.evaluate_run(args.workdir, config=config)  # as python -m mmjax.evaluate
    print(report.format_table(rep))
    curves.plot_workdir(args.workdir)
    t2 = time.time()
    out = os.path.join(args.workdir, 'export')
    print(f'== export -> {out}', flush=True)
    export_run(args.workdir, out, overwrite=True)
    t3 = time.time()
    print('\n== summary')
    for key, value in sorted(rep['zero_shot'].items()):
      print(f'zero-shot top-1 {key:24s} {value["top1"]:.3f}   (chance 0.100)')
    print(f'eval report : {report.report_path(args.workdir, rep["step"])}')
    print(f'plots       : {os.path.join(args.workdir, "plots")}')
    print(f'export      : {out} (report: {os.path.join(out, "export_report.json")})')
    print(f'time        : train {t1 - t0:.0f}s, eval {t2 - t1:.0f}s, export {t3 - t2:.0f}s')
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
