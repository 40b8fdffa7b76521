"""python -m mmjax.sweep --sweep=configs/sweeps/resolution.py --workdir=runs/sweeps/resolution --seeds=3

IMP's multi-resolution training: each image/video step draws its frame size from 24, 32 and 40
pixels (`multi`) against 32 pixels only (`single`); both are evaluated at 32 pixels
(configs/ablation_resolution.py). Every (task, size) has its own loader, so the two variants do
not read the same examples; the seed varies everything. Demo scale: 800 weighted-AGD steps.
"""

from mmjax.sweep.schedules import ZERO_SHOT_DIGITS, scaled_schedule
from mmjax.sweep.spec import Sweep

DEMO_SCALE = scaled_schedule(800)
VISUAL_TASKS = ('image_text', 'video_text', 'image_classify')


def get_sweep():
  return Sweep(
      config='../ablation_resolution.py:multi',
      overrides=DEMO_SCALE,
      baseline='single',
      variants={
          'single': {f'tasks.{t}.image_size': (32,) for t in VISUAL_TASKS},
          'multi': {},
      },
      metrics=ZERO_SHOT_DIGITS + ('linear_probe/digits/image/top1', 'time/train_seconds'))
