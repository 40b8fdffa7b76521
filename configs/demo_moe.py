"""python -m mmjax.train --config=configs/demo_moe.py --workdir=runs/demo_moe
python -m tools.upcycle --dense_workdir=runs/demo --config=configs/demo_moe.py \
    --workdir=runs/demo_moe_upcycled

The demo with a tiny sparse MoE encoder: same tasks and data as configs/demo.py (`mmjax_digits`),
same active compute as the dense tiny model (top-1 routing, experts as wide as the dense MLP).

4 experts in every 2nd of the 4 layers (blocks 1 and 3), tokens-choose top-1 with capacity
factor 1.25 per example; `:dropless` uses the grouped-matmul router instead.
"""

import os

from mmjax.config import import_config_module

_HERE = os.path.dirname(os.path.abspath(__file__))


def _demo():
  return import_config_module(os.path.join(_HERE, 'demo.py'))


def get_config(arg=None):
  if arg not in (None, 'dropless'):
    raise ValueError(f"configs/demo_moe.py takes no argument or ':dropless', got {arg!r}.")
  c = _demo().get_config('moe')
  c.model.moe.num_experts = 4
  c.model.moe.top_k = 1
  c.model.moe.every = 2
  c.model.moe.router = 'dropless' if arg == 'dropless' else 'tokens_choose'
  c.model.moe.capacity_factor = 1.25
  c.model.moe.jitter = 0.0
  c.model.moe.load_balancing_weight = 1e-2
  c.model.moe.z_loss_weight = 1e-3
  # Divide the top-k combine weights by their sum; with top-1 each token gets its expert's full
  # output, so an upcycled model starts equal to its dense parent.
  c.model.moe.normalize_combine_weights = False
  return c
