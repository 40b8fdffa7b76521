"""python -m mmjax.train --config=configs/multimae.py --workdir=runs/multimae
python -m mmjax.evaluate --config=configs/multimae.py --workdir=runs/multimae

MultiMAE on `mmjax_digits` (built locally): per example 24 of the 76 image, video and audio
tokens are visible, split across the three by Dirichlet(1) shares; the shared tiny encoder sees
only those, and a light decoder per modality rebuilds the masked patches (normalised pixels,
standardised log-mel). Evaluation is a linear probe on the encoder's pooled features of each
modality (no text: no zero-shot). CPU in minutes.

`configs/multimae.py:agd` adds the demo's image-, video- and audio-text contrastive tasks: AGD
alternates them with the MultiMAE task over the one encoder.
"""

from mmjax.config.defaults import base_config, digits_model, eval_dataset, task

DIGITS = 'mmjax_digits'


def get_config(arg=None):
  if arg not in (None, 'agd'):
    raise ValueError(f"configs/multimae.py takes no argument or ':agd', got {arg!r}.")
  c = base_config()
  c.seed = 0
  c.total_steps = 600
  c.log_every = 20
  c.checkpoint_every = 200
  digits_model(c, video=True, audio=True)
  c.model.mae_decoder.layers = 2
  c.model.mae_decoder.width = 128
  c.optimizer.learning_rate = 1.5e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0  # follows --config.total_steps
  c.optimizer.weight_decay = 0.05
  sizes = dict(image_size=32, num_frames=8, audio_samples=4096)
  # image 16 + video 32 + audio 28 tokens; 24 visible (MultiMAE shows about a sixth).
  c.tasks.multimae = task(DIGITS, 'image,video,audio', 32, multimae='image,video,audio',
                          visible_tokens=24, dirichlet_alpha=1.0, **sizes)
  if arg == 'agd':
    for m, w in (('image', 0.5), ('video', 1.0), ('audio', 1.0)):
      c.tasks[f'{m}_text'] = task(DIGITS, f'{m},text', 32, contrast=f'{m}-text', weight=w,
                                  text_length=16, **sizes)
  with_text = arg == 'agd'
  c.evaluation.datasets.digits = eval_dataset(
      DIGITS, 'image,video,audio', split='test', batch_size=128, num_clips=1, linear_probe=True,
      zero_shot=with_text, retrieval=with_text,
      text_length=16 if with_text else None, **sizes)
  return c
