"""python -m mmjax.sweep --sweep=configs/sweeps/clip_moe.py --workdir=runs/sweeps/clip_moe --seeds=3

CLIP-MoE-style sparse upcycling against staying dense, the upcycling step part of each run: every
run first trains the dense demo for `DENSE_START` steps at its seed (`DIR/VARIANT/seed_S/
dense_start`), then `tools.upcycle` restarts from that checkpoint (fresh optimizer, step 0) as
- `dense`: the same dense model (every parameter copied), or
- `upcycled`: configs/demo_moe.py, 4 experts in every 2nd layer, each a copy of the dense MLP,
  routers fresh,
and both train `total_steps` more on the same data. Equal examples seen; the MoE has the same
active compute per token (top-1). Metrics as in the pre-registered findings (README).
"""

from mmjax.seeds import KINDS
from mmjax.sweep.schedules import PRIMARY, ZERO_SHOT_DIGITS, scaled_schedule
from mmjax.sweep.spec import Sweep

DENSE_START = 800


def _prepare():
  seeds = [f'--config.seeds.{k}={{seed}}' for k in KINDS]
  dense = ['python', '-m', 'mmjax.train', '--config={here}/../demo.py',
           '--workdir={workdir}/dense_start', f'--config.total_steps={DENSE_START}', *seeds]
  upcycle = ['python', '-m', 'tools.upcycle', '--dense_workdir={workdir}/dense_start',
             '--config={config}', '--workdir={workdir}', '{flags}']
  return [dense, upcycle]


def get_sweep():
  return Sweep(
      config='../demo.py',
      configs={'upcycled': '../demo_moe.py'},
      overrides=scaled_schedule(800),
      variants={'dense': {}, 'upcycled': {}},
      prepare={'dense': _prepare(), 'upcycled': _prepare()},
      metrics=(PRIMARY,) + ZERO_SHOT_DIGITS + ('linear_probe/digits/image/top1',))
