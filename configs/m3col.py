"""python -m mmjax.train --config=configs/m3col.py --workdir=runs/m3col
python -m mmjax.evaluate --config=configs/m3col.py --workdir=runs/m3col
python -m mmjax.train --config=configs/m3col.py:nce --workdir=runs/m3col_nce
python -m mmjax.train --config=configs/m3col.py:fusion --workdir=runs/m3col_fusion

M3CoL on `mmjax_digits` image-text: every step trains the clean image-text InfoNCE plus the
M3CoL loss on images mixed within the batch (weight ~ Beta(alpha, alpha), a random permutation),
each mixed image aligned with both source captions (soft targets lam, 1 - lam); see
mmjax/train/mixup.py. `:nce` is the same run without mixup (the plain-NCE baseline).
`:fusion` adds M3CoL's fusion classifier (task `fusion_classify`, AGD-sampled with image-text):
digit labels from the concatenated pooled image and audio features, plus an auxiliary head per
modality whose cross-entropies count with aux_weight (mmjax/models/fusion_heads.py).
Tiny encoder, CPU in minutes; evaluation: zero-shot, retrieval and a linear probe on the test split.
"""

from mmjax.config.defaults import base_config, digits_model, eval_dataset, task

DIGITS = 'mmjax_digits'


def get_config(arg=None):
  if arg not in (None, '', 'nce', 'fusion'):
    raise ValueError(f"configs/m3col.py takes no argument, 'nce' or 'fusion', not {arg!r}.")
  c = base_config()
  c.total_steps = 600
  c.log_every = 20
  c.checkpoint_every = 300
  digits_model(c, audio=True)
  c.optimizer.learning_rate = 1.5e-3
  c.optimizer.warmup_steps = 60
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0  # follows --config.total_steps
  sizes = dict(image_size=32, text_length=16)
  c.tasks.image_text = task(DIGITS, 'image,text', 32, contrast='image-text',
                            m3col='' if arg == 'nce' else 'image-text', mixup_alpha=1.0, **sizes)
  if arg == 'fusion':
    c.tasks.fusion_classify = task(DIGITS, 'image,audio', 32, classify='image,audio',
                                   num_classes=10, fusion='concat', aux_weight=0.5, weight=0.5,
                                   audio_samples=4096, **sizes)
  c.evaluation.datasets.digits = eval_dataset(DIGITS, 'image', split='test', batch_size=128,
                                              linear_probe=True, **sizes)
  return c
