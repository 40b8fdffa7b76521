"""python -m mmjax.sweep --sweep=configs/sweeps/routers.py --workdir=runs/sweeps/routers --seeds=3

MoE routers on the tiny MoE encoder (configs/demo_moe.py: 4 experts in blocks 1 and 3, top-1):
tokens-choose with capacity factor 1.25 (tokens over capacity skip the MLP), experts-choose
(each expert takes its top tokens; balanced by construction, a token may get no expert) and
dropless (tokens-choose without capacity, a grouped matmul). Same examples at a seed.
Demo scale: 800 weighted-AGD steps.
"""

from mmjax.sweep.schedules import ZERO_SHOT_DIGITS, scaled_schedule
from mmjax.sweep.spec import Sweep

DEMO_SCALE = scaled_schedule(800)


def get_sweep():
  return Sweep(
      config='../demo_moe.py',
      overrides=DEMO_SCALE,
      variants={
          'tokens_choose': {'model.moe.router': 'tokens_choose'},
          'experts_choose': {'model.moe.router': 'experts_choose'},
          'dropless': {'model.moe.router': 'dropless'},
      },
      metrics=ZERO_SHOT_DIGITS + ('train/moe/video/layer_1/dropped_fraction:mean',
                           'train/step_time:median', 'time/train_seconds'))
