"""`python -m mmjax.evaluate --workdir=DIR [--datasets=a,b | --suite=NAME] [--output=OUT]`

    python -m mmjax.evaluate --workdir=runs/demo
    python -m mmjax.evaluate --workdir=runs/demo --datasets=cifar10,imagenet2012
    python -m mmjax.evaluate --workdir=runs/demo/export --suite=image --output=runs/demo/eval_export
    python -m mmjax.evaluate --workdir=runs/demo --suite=image --probes=few_shot,linear_probe
    python -m mmjax.evaluate --workdir=runs/demo --save_features   # + OUT/features/*.npz
    python -m mmjax.evaluate --workdir=runs/a,runs/b/export --output=eval/ab  # one table

Evaluates the latest (or `--step`'s) checkpoint of DIR, or the params-only export DIR, on the
run config's evaluation datasets (default) or on standard benchmarks (`--datasets`, `--suite`:
see mmjax/evaluate/benchmarks/). The config comes from DIR/config.json unless `--config` names
it; `--config.k=v` overrides it. Writes OUT/step_<N>.json, one table per suite
(OUT/<suite>.md/.json/.png), confusion matrices (OUT/plots/) and TensorBoard scalars
(OUT/tensorboard/); OUT defaults to DIR/eval and is never inside an export.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax

from mmjax import cli
from mmjax.evaluate import compare, report
from mmjax.evaluate.errors import EvalError
from mmjax.evaluate import workdir as run_lib
from mmjax.train import distributed


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m mmjax.evaluate',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True,
                      help='training run (holding checkpoints/) or params-only export; several, '
                      'comma-separated, make one table with a column per model (needs --output)')
  parser.add_argument('--config', default=None,
                      help='configs/<name>.py[:arg] of the run (default: DIR/config.json)')
  parser.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  parser.add_argument('--datasets', default=None, help='benchmarks, comma-separated')
  parser.add_argument('--suite', default=None,
                      help='benchmark suite(s): image, imagenet, video, audio, retrieval')
  parser.add_argument('--probes', default=None,
                      help='also run few_shot and/or linear_probe (comma-separated)')
  parser.add_argument('--batch_size', type=int, default=None, help='benchmark batch size')
  parser.add_argument('--output', default=None, help='report directory (default: DIR/eval)')
  parser.add_argument('--save_features', action='store_true',
                      help='also write the scored embeddings to OUT/features/<dataset>_<split>.npz')
  parser.add_argument('--dedup_captions', action='store_true', default=None,
                      help='retrieval over distinct captions (default: every caption, as '
                           'CLIP_benchmark; de-duplicated numbers are not comparable)')
  parser.add_argument('--few_shot_l2', type=float, default=None,
                      help="few-shot least-squares L2 (default 1024, big_vision's fewshot_lsr)")

  def run():
    args, overrides = cli.parse(parser, argv)
    distributed.initialize_from_env()
    workdirs = [w for w in args.workdir.split(',') if w]
    if len(workdirs) > 1:
      return _compare(args, overrides, workdirs)
    rep = run_lib.evaluate_run(
        args.workdir, config_arg=args.config, overrides=overrides, step=args.step,
        datasets=args.datasets, suite=args.suite, output=args.output, probes=args.probes,
        batch_size=args.batch_size, save_features=args.save_features,
        dedup_captions=args.dedup_captions, few_shot_l2=args.few_shot_l2)
    if jax.process_index() == 0:
      print(report.format_table(rep))
      for name, s in rep['skipped'].items():
        how = f' Prepare it with: {s["prepare"]}' if s['prepare'] else ''
        print(f'skipped {name}: {s["reason"]}{how}')
      output = run_lib.output_dir(args.workdir, args.output)
      print(f'wrote {report.report_file(output, rep["step"])}')
    return 0
  return cli.run(run)


def _compare(args, overrides, workdirs) -> int:
  """`--workdir=A,B,C`: each model into OUT/<label>/, then one table OUT/comparison.md."""
  if not args.output:
    raise EvalError('--workdir with several models needs --output=DIR for their reports and '
                    'the comparison table.')
  for w in workdirs:
    run_lib.check_source(w, args.step)
  reports = {}
  for label, w in zip(compare.labels(workdirs), workdirs):
    reports[label] = run_lib.evaluate_run(
        w, config_arg=args.config, overrides=overrides, step=args.step, datasets=args.datasets,
        suite=args.suite, output=os.path.join(args.output, label.replace(os.sep, '_')),
        probes=args.probes, batch_size=args.batch_size, save_features=args.save_features,
        dedup_captions=args.dedup_captions, few_shot_l2=args.few_shot_l2)
  if jax.process_index() == 0:
    path = compare.write(reports, args.output)
    print(open(path).read())
    print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
