"""python -m mmjax.train --config=configs/mixture_of_mamba.py --workdir=runs/mom
python -m mmjax.train --config=configs/mixture_of_mamba.py:dense --workdir=runs/mom_dense
python -m mmjax.train --config=configs/mixture_of_mamba.py:mot --workdir=runs/mom_mot

Mixture-of-Mamba (mmjax/models/mixture_of_mamba.py) on the demo's `mmjax_digits` tasks, beside
its two baselines at the same width, depth and data:
  (default)  Mixture-of-Mamba: every block a bidirectional Mamba block whose projections,
             norms and MLP are per modality, the scan (conv, A, D) shared;
  :dense     dense Mamba: the same blocks with one set of weights for all modalities;
  :mot       Mixture-of-Transformers: per-modality weights around global attention.
Per token all three do one block's worth of matmuls (per-modality weights change parameters,
not FLOPs). Besides the demo's contrastive and classification tasks, `av_classify` fuses video
and audio into one sequence, where Mixture-of-Mamba and MoT pick each token's weights by its
modality (one grouped matmul) and the scan / attention runs across both modalities.
"""

import os

from mmjax.config import import_config_module
from mmjax.config.defaults import task

_HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = (None, 'dense', 'mot')


def get_config(arg=None):
  if arg not in VARIANTS:
    raise ValueError("configs/mixture_of_mamba.py takes no argument (Mixture-of-Mamba), "
                     f"':dense' or ':mot', got {arg!r}.")
  c = import_config_module(os.path.join(_HERE, 'demo.py')).get_config()
  demo = c.tasks.image_text
  sizes = dict(image_size=demo.image_size, num_frames=demo.num_frames,
               audio_samples=demo.audio_samples, text_length=demo.text_length)
  c.tasks.av_classify = task('mmjax_digits', 'video,audio', demo.batch_size,
                             classify='video,audio', num_classes=10, weight=0.6, **sizes)
  m = c.model
  m.mamba.state, m.mamba.expand, m.mamba.chunk = 16, 2, 0
  if arg != 'mot':
    m.layer_types = ('mamba',)
  if arg != 'dense':
    m.moe.mixture_of_transformers = True
  return c
