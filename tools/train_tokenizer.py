"""Trains a 4M discrete tokenizer (a small convolutional FSQ autoencoder) on one modality.

  python -m tools.train_tokenizer --modality=image --dataset=mmjax_digits --output=runs/tok_image
  python -m tools.train_tokenizer --modality=audio --dataset=mmjax_digits --output=runs/tok_audio

Writes the tokenizer in mmjax's export layout (model.safetensors, config.json, README.md,
export_report.json with reconstruction error, PSNR, codebook usage, perplexity and round-trip
agreement on the held-out split) and prints the report. A 4M config names it as
`--config.model.fourm.tokenizers.image=DIR`. Video is not supported (the digits' frames are
the image tokenizer's job). Audio uses the digits model's log-mel front end
(8 kHz, 256-sample window, hop 128, 32 mels) unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mmjax import cli
from mmjax.data.errors import DataError
from mmjax.models import discrete_tokenizer as dt
from mmjax.models import tokenizer_files
from mmjax.train import tokenizer_training

DIGITS_AUDIO = dict(sample_rate=8000, window=256, hop=128, num_mels=32)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m tools.train_tokenizer',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('--modality', required=True, help='image or audio (video: not supported)')
  parser.add_argument('--dataset', required=True, help='e.g. mmjax_digits')
  parser.add_argument('--output', required=True, help='directory to write (must not hold files)')
  parser.add_argument('--data_dir', default=None, help='TFDS data dir (default: TFDS default)')
  parser.add_argument('--steps', type=int, default=1500)
  parser.add_argument('--levels', default='8,5,5,5', help='FSQ levels per latent channel')
  parser.add_argument('--channels', default='32,64,64', help='conv widths; one 2x downsampling each')
  parser.add_argument('--image_size', type=int, default=32)
  parser.add_argument('--audio_samples', type=int, default=4096)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--split', default='train')
  parser.add_argument('--eval_split', default='test')

  def run():
    args = parser.parse_args(argv)
    if args.modality not in dt.MODALITIES:
      raise DataError(f'--modality={args.modality!r} has no tokenizer: choose one of '
                      f'{", ".join(dt.MODALITIES)} (video is not supported).')
    if os.path.isdir(args.output) and os.listdir(args.output):
      raise DataError(f'--output={args.output} already holds files: choose an empty or new '
                      'directory.')
    try:
      levels = [int(v) for v in args.levels.split(',')]
      channels = [int(v) for v in args.channels.split(',')]
      spec = dt.make_spec(args.modality, levels=levels, channels=channels,
                          image_size=args.image_size, audio=DIGITS_AUDIO,
                          audio_samples=args.audio_samples)
    except ValueError as e:
      raise DataError(f'bad tokenizer shape: {e} Fix --levels, --channels or the input size.')
    if args.steps < 1:
      raise DataError(f'--steps must be at least 1, got {args.steps}.')
    report = tokenizer_training.train_and_save(
        args.modality, args.dataset, args.output, data_dir=args.data_dir, spec=spec,
        steps=args.steps, seed=args.seed, splits=(args.split, args.eval_split))
    print(json.dumps(tokenizer_files.report_of(args.output), indent=1, sort_keys=True))
    del report
    return 0
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
