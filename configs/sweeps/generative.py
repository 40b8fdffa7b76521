"""python -m mmjax.sweep --sweep=configs/sweeps/generative.py --workdir=runs/sweeps/generative --seeds=3

Generative objectives against the contrastive demo, each pretraining the tiny encoder on
`mmjax_digits` for the same number of steps: the demo (AGD over image/video/audio-text NCE and
supervised digit classification), CoCa (image captioning + image-text NCE), SyCoCa (CoCa +
text-guided masked image modeling) and MultiMAE (masked image/video/audio modeling, no text,
no labels). Compared by the linear probe on the pooled encoder features of the digits test split:
image for all, video and audio where the run trains them. Caption quality is not a sweep metric:
`python -m mmjax.evaluate.captioning --config=configs/coca.py --workdir=DIR/coca/seed_0` (add
the run's `--config.*` flags from DIR/coca/seed_0) reports the right-digit share, BLEU-4 and CIDEr.
Demo scale: 800 steps; schedules follow `--config.total_steps`.
"""

from mmjax.sweep.schedules import scaled_schedule
from mmjax.sweep.spec import Sweep

PROBES = tuple(f'linear_probe/digits/{m}/top1' for m in ('image', 'video', 'audio'))
DEMO_SCALE = scaled_schedule(800)


def get_sweep():
  return Sweep(
      config='../demo.py',
      overrides=DEMO_SCALE,
      variants={
          'contrastive': {},
          'coca': {'evaluation.datasets.digits.linear_probe': True},
          'sycoca': {'evaluation.datasets.digits.linear_probe': True},
          'multimae': {},
      },
      configs={'coca': '../coca.py', 'sycoca': '../coca.py:sycoca',
               'multimae': '../multimae.py'},
      metrics=PROBES + ('time/train_seconds',))
