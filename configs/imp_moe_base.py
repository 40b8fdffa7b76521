"""python -m tools.aot --config=configs/imp_moe_base.py --topology=v5p-256
python -m mmjax.train --config=configs/imp_moe_base.py --workdir=runs/imp_moe_base \
    --config.text.tokenizer=t5/spiece.model --config.data_dir=tensorflow_datasets

IMP-MoE-B (arXiv 2305.06324): the IMP-B encoder with 16 experts in the last 6 of its 12
layers (top-1, batch-prioritised), QK LayerNorm; tasks and data as configs/imp_base.py.

Mesh: data = the rest, expert = 16 (one expert per device on that axis), fsdp = 1.
"""

import os

from mmjax.config import import_config_module

_HERE = os.path.dirname(os.path.abspath(__file__))


def _imp_base():
  return import_config_module(os.path.join(_HERE, 'imp_base.py'))


def get_config(arg=None):
  if arg is not None:
    raise ValueError(f'configs/imp_moe_base.py takes no argument, got {arg!r}.')
  return _imp_base().imp_config('base', moe=True)
