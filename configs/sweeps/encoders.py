"""python -m mmjax.sweep --sweep=configs/sweeps/encoders.py --workdir=runs/sweeps/encoders --seeds=3

Which encoder, at equal active FLOPs per token (IMP, VATT, Mixture-of-Transformers): one dense
encoder shared by every modality; the same with a MoE MLP in every 2nd block (4 experts,
tokens-choose top-1, each expert as wide as the dense MLP); modality-specific towers (VATT's
baseline, one dense encoder per modality); Mixture-of-Transformers (per-modality weights in every
layer, global attention). Each token passes through one MLP of the same width in all four, so
active compute per token is equal; parameters are not (MoE x4 in its MoE layers, towers and MoT
x3 in the encoder). Counted from the jaxpr (mmjax/plan/flop_count.py), dense and towers have
identical forward FLOPs per task; MoE's expert matmuls run over capacity slots (1.25 x tokens in
its two MoE layers), about 8% more. (The counter does not see the grouped matmul MoT uses.)
Demo scale: 800 weighted-AGD steps of configs/demo.py.
"""

from mmjax.sweep.schedules import ZERO_SHOT_DIGITS, scaled_schedule
from mmjax.sweep.spec import Sweep

DEMO_SCALE = scaled_schedule(800)
MOE = {'model.moe.num_experts': 4, 'model.moe.top_k': 1, 'model.moe.every': 2,
       'model.moe.router': 'tokens_choose', 'model.moe.capacity_factor': 1.25}


def get_sweep():
  return Sweep(
      config='../demo.py',
      overrides=DEMO_SCALE,
      variants={
          'dense': {},
          'moe_top1': MOE,
          'towers': {'model.encoder_sharing': 'per_modality'},
          'mot': {'model.moe.mixture_of_transformers': True},
      },
      metrics=ZERO_SHOT_DIGITS + ('train/step_time:median', 'time/train_seconds'))
