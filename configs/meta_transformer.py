"""python -m mmjax.train --config=configs/meta_transformer.py --workdir=runs/meta --config.init_from=runs/demo_export
python -m mmjax.train --config=configs/meta_transformer.py:lit --workdir=runs/lit --config.init_from=runs/demo_pm_export

Meta-Transformer on `mmjax_digits`: the demo's shared encoder, initialised from a params-only
export of configs/demo.py and frozen; the per-modality embeddings (tokenizers), projections,
classifier head and temperatures train. The export comes from

  python -m mmjax.train --config=configs/demo.py --workdir=runs/demo
  python -m mmjax.export --workdir=runs/demo --output=runs/demo_export

`:lit` is LiT-style locking with one encoder per modality: the image path (image embedding,
image encoder, image projection) is locked, every other tower trains. Its export is of
configs/demo.py with `--config.model.encoder_sharing=per_modality`. Without `init_from` the run
stops before writing anything, naming the export it needs.
"""

import os

from mmjax.config import import_config_module

_HERE = os.path.dirname(os.path.abspath(__file__))

FROZEN_ENCODER = (r'encoder\..*',)
LOCKED_IMAGE_PATH = (r'embed_image\..*', r'encoder_image\..*', r'proj_image\..*')


def get_config(arg=None):
  c = import_config_module(os.path.join(_HERE, 'demo.py')).get_config()
  c.total_steps = 600
  c.checkpoint_every = 200
  c.optimizer.warmup_steps = 50
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0  # follows --config.total_steps
  if arg == 'lit':
    c.model.encoder_sharing = 'per_modality'
    c.optimizer.freeze = LOCKED_IMAGE_PATH
    c.init_from_hint = ('an export of configs/demo.py trained with '
                        '--config.model.encoder_sharing=per_modality (python -m mmjax.train '
                        '--config=configs/demo.py --workdir=runs/demo_pm '
                        '--config.model.encoder_sharing=per_modality, then python -m '
                        'mmjax.export --workdir=runs/demo_pm --output=runs/demo_pm_export)')
  elif arg in (None, ''):
    c.optimizer.freeze = FROZEN_ENCODER
    c.init_from_hint = ('an export of configs/demo.py (python -m mmjax.train '
                        '--config=configs/demo.py --workdir=runs/demo, then python -m '
                        'mmjax.export --workdir=runs/demo --output=runs/demo_export)')
  else:
    raise ValueError(f"configs/meta_transformer.py takes no argument or 'lit', not {arg!r}.")
  return c
