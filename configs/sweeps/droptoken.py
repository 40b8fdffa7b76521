"""python -m mmjax.sweep --sweep=configs/sweeps/droptoken.py --workdir=runs/sweeps/droptoken --seeds=3

VATT's DropToken trade-off: drop 0, 25, 50 or 75% of the video tokens in training (chosen at
random per example), against zero-shot video accuracy (evaluation keeps every token) and step
time. `train/step_time:median` is the median over logged windows of all tasks' steps; video is
the largest and most drawn task (41% of steps), so it moves with the video step's cost, diluted
by the other tasks. Same examples in every variant at a seed. Demo scale: 800 steps.
"""

from mmjax.sweep.schedules import scaled_schedule
from mmjax.sweep.spec import Sweep

DEMO_SCALE = scaled_schedule(800)


def get_sweep():
  return Sweep(
      config='../demo.py',
      overrides=DEMO_SCALE,
      variants={f'drop_{int(r * 100)}': {'tasks.video_text.drop_token': r}
                for r in (0.0, 0.25, 0.5, 0.75)},
      metrics=('zero_shot/digits/video/top1', 'retrieval/digits/video_to_text/R@1',
               'train/step_time:median', 'time/train_seconds'))
