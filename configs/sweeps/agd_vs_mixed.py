"""python -m mmjax.sweep --sweep=configs/sweeps/agd_vs_mixed.py --workdir=runs/sweeps/agd_vs_mixed --seeds=3

IMP's ablation: AGD (one task per step, round robin) against the mixed baseline (every step sums
all four tasks' losses over one batch of each, for a quarter of the steps), at equal examples
seen. Within a seed both variants read the same examples of every task in the same order (same
data seed, same loaders); the init, sampler and DropToken seeds vary with the seed as well.
Demo scale: 800 AGD steps (a third of configs/demo.py), tiny encoder; schedule lengths follow
`--config.total_steps` (e.g. `--config.total_steps=240` for a quick look).
"""

from mmjax.sweep.schedules import PRIMARY, ZERO_SHOT_DIGITS, scaled_schedule
from mmjax.sweep.spec import Sweep

DEMO_SCALE = scaled_schedule(800)


def get_sweep():
  n = lambda c: len(c.tasks)
  return Sweep(
      config='../ablation_agd.py:agd',
      overrides=DEMO_SCALE,
      variants={
          'agd': {},
          'mixed': {  # a quarter of the steps, each with all four tasks: equal examples seen
              'agd.mode': 'mixed',
              'total_steps': lambda c: c.total_steps // n(c),
              'optimizer.warmup_steps': lambda c: max(1, c.optimizer.warmup_steps // n(c)),
              'optimizer.decay_steps': lambda c: c.total_steps // n(c),
              'log_every': lambda c: max(1, c.log_every // n(c)),
              'checkpoint_every': lambda c: max(1, c.checkpoint_every // n(c)),
          },
      },
      # Not train/loss: a mixed step's loss is the sum of four tasks', an AGD step's one task's.
      metrics=(PRIMARY,) + ZERO_SHOT_DIGITS + ('linear_probe/digits/image/top1',
                                               'time/train_seconds'))
