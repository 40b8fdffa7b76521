"""python -m mmjax.train --config=configs/ablation_agd.py:agd   --workdir=runs/ablation_agd
python -m mmjax.train --config=configs/ablation_agd.py:mixed --workdir=runs/ablation_mixed
python -m mmjax.evaluate --config=configs/ablation_agd.py:agd   --workdir=runs/ablation_agd
python -m mmjax.evaluate --config=configs/ablation_agd.py:mixed --workdir=runs/ablation_mixed

AGD versus the mixed baseline (IMP's ablation) on mmjax_digits, at equal examples seen.

`agd`: one task per step, tasks drawn round robin. `mixed`: every step sums the losses of all
tasks over one batch of each, for total_steps / num_tasks steps, so both runs see the same
examples of every task and the same number of examples in all; they differ in how gradients are
combined (alternating vs summed), which is the comparison the IMP paper makes.
notebooks/agd_ablation.ipynb plots the two runs side by side (one seed: on par within noise).
"""

import os

from mmjax.config import import_config_module

_HERE = os.path.dirname(os.path.abspath(__file__))

_demo = import_config_module(os.path.join(_HERE, 'demo.py'))


def get_config(arg=None):
  arg = arg or 'agd'
  if arg not in ('agd', 'mixed'):
    raise ValueError(f"configs/ablation_agd.py takes ':agd' or ':mixed', got {arg!r}.")
  c = _demo.get_config()
  with c.tasks.unlocked():
    for t in c.tasks.values():
      t.weight = 1.0
      t.interval = 1
  num_tasks = len(c.tasks)
  if arg == 'agd':
    c.agd.mode = 'round_robin'
  else:
    c.agd.mode = 'mixed'
    c.total_steps = c.total_steps // num_tasks
    c.optimizer.warmup_steps = c.optimizer.warmup_steps // num_tasks
    c.log_every = max(1, c.log_every // num_tasks)
    c.checkpoint_every = max(1, c.checkpoint_every // num_tasks)
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0  # follows --config.total_steps
  return c
