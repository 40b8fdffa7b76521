"""python -m mmjax.train --config=configs/ablation_resolution.py:multi  --workdir=runs/res_multi
python -m mmjax.train --config=configs/ablation_resolution.py:single --workdir=runs/res_single

IMP's multi-resolution training on mmjax_digits: `multi` draws each image/video step's frame size
from 24, 32 and 40 pixels (3x3, 4x4 or 5x5 patches; about the same tokens per step on average as
32 pixels); `single` trains at 32 pixels only. Both evaluate at 32 pixels. The sizes are tuples in
both, so `--config.tasks.<task>.image_size=(32,)` turns one into the other.
configs/sweeps/resolution.py runs both over seeds.
"""

import os

import ml_collections

from mmjax.config import import_config_module

_HERE = os.path.dirname(os.path.abspath(__file__))
_demo = import_config_module(os.path.join(_HERE, 'demo.py'))

SIZES = {'multi': (24, 32, 40), 'single': (32,)}
VISUAL_TASKS = ('image_text', 'video_text', 'image_classify')


def get_config(arg=None):
  arg = arg or 'multi'
  if arg not in SIZES:
    raise ValueError(f"configs/ablation_resolution.py takes ':multi' or ':single', got {arg!r}.")
  c = _demo.get_config()
  for name in VISUAL_TASKS:  # rebuilt: the demo's image_size is typed int, this one a tuple
    fields = c.tasks[name].to_dict()
    fields['image_size'] = SIZES[arg]
    c.tasks[name] = ml_collections.ConfigDict(fields)
  return c
