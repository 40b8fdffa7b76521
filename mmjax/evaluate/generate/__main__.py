"""`python -m mmjax.evaluate.generate --workdir=DIR --from=MOD --to=MOD [--classifier=EXPORT]`

Any-to-any generation with a trained 4M run (configs/fourm.py) on the held-out split of its
4M task's dataset: the source of each test example (its image, audio or caption) goes in, the
target comes out (text autoregressively; image/audio tokens MaskGIT-style, `--steps` cosine
steps, then the tokenizer's decoder). Writes DIR/generate/FROM_to_TO/: samples (PNG images,
WAV audio by Griffin-Lim, or captions in report.json), grid.png, and report.json with

- `right_digit_share` (to text): captions naming the example's digit and no other;
- `classified_as_asked` (to image/audio, with `--classifier`, a params export of a contrastive
  model such as the demo's runs/demo/export, classifying zero-shot; or `pixel_probe`, a logistic
  regression fitted on the train split's raw inputs): the share of generated samples classified
  as the digit the source showed; the classifier's accuracy on the real test inputs too;
- `token_accuracy`: one-pass argmax accuracy of the target's tokens given the whole source;
- the target tokenizer's reconstruction error (its export report and on these examples).
Chance is 10% for the shares.
"""

from __future__ import annotations

import argparse
import json
import sys

from mmjax import cli
from mmjax.data.digits.render import CLASS_NAMES
from mmjax.evaluate.errors import EvalError
from mmjax.evaluate.generation_run import run_generation


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m mmjax.evaluate.generate',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True, help='a 4M training run')
  parser.add_argument('--from', dest='src', required=True, help='image, audio or text')
  parser.add_argument('--to', dest='tgt', required=True, help='image, audio or text')
  parser.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  parser.add_argument('--num', type=int, default=200, help='test examples to generate from')
  parser.add_argument('--steps', type=int, default=8, help='MaskGIT steps (image/audio)')
  parser.add_argument('--temperature', type=float, default=1.0, help='MaskGIT sampling (0: argmax)')
  parser.add_argument('--classifier', default='', help='params export of a contrastive model, '
                      'or pixel_probe (a logistic regression on the train inputs)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--output', default='', help='default: WORKDIR/generate/FROM_to_TO')

  def run():
    args, _ = cli.parse(parser, argv)
    if args.num < 1 or args.steps < 1:
      raise EvalError(f'--num and --steps must be at least 1, got {args.num} and {args.steps}.')
    rep = run_generation(args.workdir, args.src, args.tgt, step=args.step, num=args.num,
                         steps=args.steps, temperature=args.temperature,
                         classifier=args.classifier, seed=args.seed, output=args.output)
    summary = {k: v for k, v in rep.items() if k != 'samples'}
    print(json.dumps(summary, indent=1))
    for s in rep.get('samples', [])[:6]:
      print(f'  {CLASS_NAMES[s["label"]]}: {s["caption"]!r}')
    return 0
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
