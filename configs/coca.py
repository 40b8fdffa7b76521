"""python -m mmjax.train --config=configs/coca.py --workdir=runs/coca
python -m mmjax.evaluate.captioning --config=configs/coca.py --workdir=runs/coca

CoCa on `mmjax_digits` (built locally): the image encoder's tokens are captioned by a small text
decoder (1 causal + 1 cross-attending layer) while image and text are contrasted through an
attention-pooled image embedding; loss = contrastive_weight * NCE + caption_weight * caption CE.
Tiny encoder, CPU in minutes. The second command greedy-decodes the test images and reports the
share of captions naming the right digit.

`configs/coca.py:sycoca` adds SyCoCa's text-guided masked image modeling: the caption's attention
over the image patches masks the half it attends to most, the encoder sees the other half, and
a light decoder cross-attending to the caption rebuilds the masked patches; its loss is added
with `sycoca_weight` (0 turns it off).
"""

from mmjax.config.defaults import base_config, digits_model, eval_dataset, task

DIGITS = 'mmjax_digits'


def get_config(arg=None):
  if arg not in (None, 'sycoca'):
    raise ValueError(f"configs/coca.py takes no argument or ':sycoca', got {arg!r}.")
  c = base_config()
  c.seed = 0
  c.total_steps = 600
  c.log_every = 20
  c.checkpoint_every = 200
  digits_model(c)
  c.model.caption_decoder.unimodal_layers = 1
  c.model.caption_decoder.multimodal_layers = 1
  c.optimizer.learning_rate = 1.5e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0  # follows --config.total_steps
  c.optimizer.weight_decay = 1e-4
  sizes = dict(image_size=32, text_length=16)
  c.tasks.image_caption = task(DIGITS, 'image,text', 32, contrast='image-text', caption='image',
                               contrastive_weight=1.0, caption_weight=1.0, **sizes)
  if arg == 'sycoca':
    c.tasks.image_caption.sycoca_weight = 1.0
    c.tasks.image_caption.sycoca_mask_ratio = 0.5
    c.model.mae_decoder.layers = 1
  c.evaluation.datasets.digits = eval_dataset(DIGITS, 'image', split='test', batch_size=128,
                                              **sizes)
  return c
