"""python -m tools.aot --config=configs/imp_moe_base.py --topology=v5p-256
python -m mmjax.train --config=configs/imp_moe_base.py --workdir=runs/imp_moe_base \
    --config.text.tokenizer=t5/spiece.model --config.data_dir=tensorflow_datasets

IMP-MoE-B (arXiv 2305.06324): the IMP-B encoder with 16 experts in the last 6 of its 12
layers (top-1, batch-prioritised), QK LayerNorm; tasks and data as configs/imp_base.py.

Mesh: data = the rest, expert = 16 (one expert per device on that axis), fsdp = 1.
"""

import importlib.util
import os


def _imp_base():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'imp_base.py')
  spec = importlib.util.spec_from_file_location('_mmjax_imp_base_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg=None):
  del arg
  return _imp_base().imp_config('base', moe=True)
