"""python -m mmjax.train --config=configs/siglip.py --workdir=runs/siglip
python -m mmjax.train --config=configs/siglip.py:clip --workdir=runs/clip_towers

Published-model options on `mmjax_digits` image-text (mmjax/models/towers.py): one tower per
modality, the text tower narrower than the image tower, full (per-cell) image positions and
image mean/std normalisation.

- default, SigLIP-style: the sigmoid contrastive loss with a learnt logit bias
  (`model.contrast_loss='sigmoid'`), the image tower pooled by an attention-pool (MAP) head, the
  text tower by its last position, attending to padding as SigLIP does.
- `:clip`, CLIP-style: InfoNCE, QuickGELU, a class token and a pre-encoder LayerNorm (`ln_pre`)
  in the image tower, a causal text tower pooled at its last position.
"""

from mmjax.config.defaults import base_config, digits_model, eval_dataset, task

DIGITS = 'mmjax_digits'


def get_config(arg=None):
  if arg not in (None, '', 'clip'):
    raise ValueError(f"configs/siglip.py takes no argument or ':clip', got {arg!r}.")
  c = base_config()
  c.total_steps = 1200
  c.log_every = 20
  c.checkpoint_every = 400
  digits_model(c)
  m = c.model
  m.encoder_sharing = 'per_modality'
  m.pos_embed = 'full'
  m.pixel_mean, m.pixel_std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
  m.towers.text.width, m.towers.text.num_heads, m.towers.text.mlp_dim = 64, 2, 256
  m.towers.text.padding_mask = False
  m.towers.text.pooling = 'last'
  if arg == 'clip':
    m.activation = 'quick_gelu'
    m.norm_eps = 1e-5
    m.towers.image.pooling, m.towers.image.ln_pre = 'cls', True
    m.towers.text.causal = True
  else:
    m.contrast_loss = 'sigmoid'
    m.towers.image.pooling = 'map'
    m.temperature.init = 0.1          # SigLIP's init: scale 10, bias -10
    m.logit_bias_init = -10.0
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0
  sizes = dict(image_size=32, text_length=16)
  c.tasks.image_text = task(DIGITS, 'image,text', 32, contrast='image-text', **sizes)
  c.evaluation.datasets.digits = eval_dataset(DIGITS, 'image', split='test', batch_size=128,
                                              **sizes)
  return c
