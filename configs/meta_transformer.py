"""python -m mmjax.train --config=configs/meta_transformer.py --workdir=runs/meta --config.init_from=runs/demo_export
python -m mmjax.train --config=configs/meta_transformer.py:lit --workdir=runs/lit --config.init_from=runs/demo_pm_export
python -m mmjax.train --config=configs/meta_transformer.py:all --workdir=runs/meta_all

Meta-Transformer on `mmjax_digits`: the demo's shared encoder, initialised from a params-only
export of configs/demo.py and frozen; the per-modality embeddings (tokenizers), projections,
classifier head and temperatures train. The export comes from

  python -m mmjax.train --config=configs/demo.py --workdir=runs/demo
  python -m mmjax.export --workdir=runs/demo --output=runs/demo_export

`:lit` is LiT-style locking with one encoder per modality: the image path (image embedding,
image encoder, image projection) is locked, every other tower trains. Its export is of
configs/demo.py with `--config.model.encoder_sharing=per_modality`. Without `init_from` the run
stops before writing anything, naming the export it needs.

`:all` is Meta-Transformer's claim on the digits, from scratch: one shared encoder, five
modalities (image, video, audio, the pen strokes as a point cloud, the pen trajectory as a time
series; core/modalities.py), each contrasted with text in one AGD run, evaluated zero-shot on
the held-out scans for all five.
"""

import os

from mmjax.config import import_config_module
from mmjax.config.defaults import eval_dataset, task

_HERE = os.path.dirname(os.path.abspath(__file__))

FROZEN_ENCODER = (r'encoder\..*',)
LOCKED_IMAGE_PATH = (r'embed_image\..*', r'encoder_image\..*', r'proj_image\..*')


# Input sizes of every task and the evaluation: the demo's, plus 64 stroke points and 64 steps of
# (x, y, pen down).
ALL_SIZES = dict(image_size=32, num_frames=8, audio_samples=4096, text_length=16, num_points=64,
                 series_length=64, series_channels=3)
ALL_WEIGHTS = dict(image=0.6, video=1.2, audio=1.2, point_cloud=1.0, time_series=1.0)


def _all(c):
  """Five modality-text tasks from scratch (see the module docstring)."""
  c.tasks = type(c.tasks)()
  c.total_steps = 1400   # ~24 min on a shared 2-core CPU (README)
  c.checkpoint_every = 500
  c.optimizer.warmup_steps = 150
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0
  for m, weight in ALL_WEIGHTS.items():
    c.tasks[f'{m}_text'] = task('mmjax_digits', f'{m},text', 32, contrast=f'{m}-text',
                                weight=weight, **ALL_SIZES)
  c.evaluation.datasets = type(c.evaluation.datasets)()
  c.evaluation.datasets.digits = eval_dataset(
      'mmjax_digits', ','.join(ALL_WEIGHTS), split='test', batch_size=128, retrieval=False,
      **ALL_SIZES)
  return c


def get_config(arg=None):
  c = import_config_module(os.path.join(_HERE, 'demo.py')).get_config()
  if arg == 'all':
    return _all(c)
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
    raise ValueError(f"configs/meta_transformer.py takes no argument, 'lit' or 'all', not "
                     f'{arg!r}.')
  return c
