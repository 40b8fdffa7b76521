"""python -m mmjax.sweep --sweep=configs/sweeps/long_range.py --workdir=runs/sweeps/long_range --seeds=3
python -m tools.plot_loss_vs_flops --sweep_dir=runs/sweeps/long_range \
  --variants=mamba,mom,attention,maelre --baseline=mamba --out=loss_vs_flops.png --json=loss_vs_flops.json

The long-range encoders side by side at one small, equal budget (CPU scale): dense attention,
dense Mamba, Mixture-of-Mamba and MAELRE token merging, each trained on the same tasks
(configs/mixture_of_mamba.py: the demo's digits tasks plus the fused video+audio
`av_classify`), the same width (64), depth (2 blocks), MLP (256), Mamba state size (8),
batches (the demo's 32), steps (600) and seeds, then
evaluated zero-shot and by linear probe on the held-out digits. Variants:
  attention  every block attention (configs/mixture_of_mamba.py:dense, `layer_types=()`);
  mamba      every block a bidirectional Mamba block, one set of weights for all modalities;
  mom        Mixture-of-Mamba: the same blocks with per-modality projections, norms and MLP;
  maelre     attention with half the tokens merged after block 0 (size-weighted attention,
             linear attention for blocks reading more than 16 tokens).
Per token Mamba and Mixture-of-Mamba do the same FLOPs (per-modality weights add parameters,
not compute); `tools/plot_loss_vs_flops.py` counts each task's training step
(`mmjax.plan.flop_count.count_model_flops`) and plots training loss against cumulative FLOPs.
`--config.total_steps=N` rescales the schedule. Results at `--seeds=1`: README, "Trained at one
small budget"; notebooks/long_range_results/.
"""

from mmjax.sweep.schedules import ZERO_SHOT_DIGITS, scaled_schedule
from mmjax.sweep.spec import Sweep

SMALL = {'model.width': 64, 'model.num_layers': 2, 'model.num_heads': 2, 'model.mlp_dim': 256,
         'model.mamba.state': 8}
PROBES = tuple(f'linear_probe/digits/{m}/top1' for m in ('image', 'video', 'audio'))


def get_sweep():
  return Sweep(
      config='../mixture_of_mamba.py:dense',
      overrides={**scaled_schedule(600), **SMALL},
      variants={
          'attention': {'model.layer_types': ()},
          'mamba': {},
          'mom': {},
          'maelre': {'model.layer_types': (), 'model.maelre.merge_after': (0,),
                     'model.maelre.merge_ratio': 0.5, 'model.maelre.linear_above': 16},
      },
      configs={'mom': '../mixture_of_mamba.py'},
      metrics=ZERO_SHOT_DIGITS + PROBES + ('train/tasks/av_classify/loss',
                                           'train/step_time:median', 'time/train_seconds'))
