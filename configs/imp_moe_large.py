"""python -m tools.aot --config=configs/imp_moe_large.py --topology=v5p-256
python -m mmjax.train --config=configs/imp_moe_large.py --workdir=runs/imp_moe_large \
    --config.text.tokenizer=t5/spiece.model --config.data_dir=tensorflow_datasets

IMP-MoE-L (arXiv 2305.06324): 24 layers, width 1024, 16 heads, MLP 4096, with 16 experts in
the last 6 layers (top-1, batch-prioritised), QK LayerNorm; LR 5e-4, warmup 50k, 500k steps.

Mesh: expert = 16, fsdp = the rest (8 on a v5p-256, 4 on a v5p-128), data = 1; every task
batch (8192 / 2048) divides the data-parallel size. Tasks and data as configs/imp_base.py.
"""

import os

from mmjax.config import import_config_module

_HERE = os.path.dirname(os.path.abspath(__file__))


def _imp_base():
  return import_config_module(os.path.join(_HERE, 'imp_base.py'))


def get_config(arg=None):
  if arg is not None:
    raise ValueError(f'configs/imp_moe_large.py takes no argument, got {arg!r}.')
  return _imp_base().imp_config('large', moe=True)
