"""python -m mmjax.sweep --sweep=configs/sweeps/routers.py --workdir=runs/sweeps/routers --seeds=3

MoE routers on the tiny MoE encoder (configs/demo_moe.py: 4 experts in blocks 1 and 3, top-1):
tokens-choose with capacity factor 1.25 (tokens over capacity skip the MLP), experts-choose
(each expert takes its top tokens; balanced by construction, a token may get no expert) and
dropless (tokens-choose without capacity, a grouped matmul). Same examples at a seed.
Demo scale: 800 weighted-AGD steps.
"""

from mmjax.sweep.spec import Sweep

ZERO_SHOT = tuple(f'zero_shot/digits/{m}/top1' for m in ('image', 'video', 'audio'))
DEMO_SCALE = {
    'total_steps': 800,
    'optimizer.warmup_steps': lambda c: max(1, c.total_steps // 12),
    'optimizer.decay_steps': lambda c: c.total_steps,
    'log_every': lambda c: max(1, c.total_steps // 40),
    'checkpoint_every': lambda c: max(1, c.total_steps // 4),
}


def get_sweep():
  return Sweep(
      config='../demo_moe.py',
      overrides=DEMO_SCALE,
      variants={
          'tokens_choose': {'model.moe.router': 'tokens_choose'},
          'experts_choose': {'model.moe.router': 'experts_choose'},
          'dropless': {'model.moe.router': 'dropless'},
      },
      metrics=ZERO_SHOT + ('train/moe/video/layer_1/dropped_fraction:mean',
                           'train/step_time:median', 'time/train_seconds'))
