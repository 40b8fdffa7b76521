"""python -m mmjax.sweep --sweep=configs/sweeps/contrastive_variants.py --workdir=runs/sweeps/m3col --seeds=3
python -m mmjax.sweep --sweep=configs/sweeps/contrastive_variants.py:frozen --workdir=runs/sweeps/frozen --seeds=3 --config.init_from=runs/demo/export
python -m mmjax.sweep --sweep=configs/sweeps/contrastive_variants.py:mobileclip --workdir=runs/sweeps/mobileclip --seeds=3 --config.data_dir=runs/reinforced

The contrastive variants of issue 20, one comparison per argument, each at demo scale on
`mmjax_digits`, zero-shot and linear-probe accuracy on the test split:

- (no argument) M3CoL vs plain InfoNCE: configs/m3col.py with and without the mixup loss.
- `:frozen` Meta-Transformer: the demo's shared encoder frozen at an export of configs/demo.py
  (`--config.init_from`, see configs/meta_transformer.py) vs the same start fully fine-tuned
  vs training from scratch.
- `:mobileclip` the distilled student vs the same student without the teacher (distill_weight
  0), both on the reinforced dataset (see configs/mobileclip.py for the commands that make it).
"""

from mmjax.config import ConfigError
from mmjax.sweep.schedules import scaled_schedule
from mmjax.sweep.spec import Sweep

DEMO_SCALE = scaled_schedule(600, warmup_div=10, log_div=30, checkpoint_div=2)
ACCURACY = ('zero_shot/digits/image/top1', 'linear_probe/digits/image/top1')


def get_sweep(arg=None):
  if arg in (None, '', 'm3col'):
    return Sweep(config='../m3col.py', overrides=DEMO_SCALE,
                 variants={'nce': {'tasks.image_text.m3col': ''}, 'm3col': {}},
                 metrics=ACCURACY + ('time/train_seconds',))
  if arg == 'frozen':
    return Sweep(config='../meta_transformer.py', overrides=DEMO_SCALE,
                 variants={'full_finetune': {'optimizer.freeze': ()},
                           'frozen_encoder': {},
                           'scratch': {'optimizer.freeze': (), 'init_from': ''}},
                 metrics=ACCURACY + ('zero_shot/digits/audio/top1', 'time/train_seconds'))
  if arg == 'mobileclip':
    return Sweep(config='../mobileclip.py', overrides=DEMO_SCALE,
                 variants={'no_teacher': {'tasks.image_text.distill_weight': 0.0},
                           'student': {}},
                 metrics=ACCURACY + ('retrieval/digits/image_to_text/R@1', 'time/train_seconds'))
  raise ConfigError(f"configs/sweeps/contrastive_variants.py takes no argument, 'frozen' or "
                   f"'mobileclip', not {arg!r}.")
