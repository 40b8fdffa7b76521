"""python -m mmjax.train --config=configs/fourm.py --workdir=runs/fourm
python -m mmjax.evaluate.generate --workdir=runs/fourm --from=image --to=text
python -m mmjax.evaluate.generate --workdir=runs/fourm --from=text --to=image --classifier=pixel_probe --temperature=0.5

4M on `mmjax_digits` (built locally): image, audio and text become discrete tokens (image and
audio by small FSQ autoencoders, 16 tokens each; text by the run's SentencePiece ids, up to 16).
Per example 16 input and 16 target tokens are split over the three by Dirichlet(0.3) shares; the
shared tiny encoder sees the inputs, a 2-layer decoder predicts the targets. With no tokenizer
named (`config.model.fourm.tokenizers.image=''`), the first run trains the two tokenizers
(cached beside the dataset, reused afterwards). `generate` decodes text autoregressively and
image/audio tokens MaskGIT-style, and measures the generated digits (see its docstring;
`--classifier=runs/demo/export` classifies with the demo's contrastive model instead).

`configs/fourm.py:agd` adds the demo's image-text and audio-text contrastive tasks: AGD
alternates them with the 4M task over the one encoder.
"""

from mmjax.config.defaults import base_config, digits_model, eval_dataset, task

DIGITS = 'mmjax_digits'


def get_config(arg=None):
  if arg not in (None, 'agd'):
    raise ValueError(f"configs/fourm.py takes no argument or ':agd', got {arg!r}.")
  c = base_config()
  c.seed = 0
  c.total_steps = 2000
  c.log_every = 50
  c.checkpoint_every = 500
  digits_model(c, audio=True)
  c.model.fourm.decoder_layers = 2
  c.model.fourm.tokenizer_steps = 400
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 200
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0  # follows --config.total_steps
  c.optimizer.weight_decay = 0.05
  sizes = dict(image_size=32, audio_samples=4096, text_length=16)
  c.tasks.fourm = task(DIGITS, 'image,audio,text', 64, fourm='image,audio,text',
                       input_tokens=16, target_tokens=16, dirichlet_alpha=0.3, **sizes)
  if arg == 'agd':
    for m in ('image', 'audio'):
      c.tasks[f'{m}_text'] = task(DIGITS, f'{m},text', 32, contrast=f'{m}-text', weight=0.5,
                                  text_length=16, **{k: v for k, v in sizes.items()
                                                     if k != 'text_length'})
  c.evaluation.datasets.digits = eval_dataset(
      DIGITS, 'image,audio', split='test', batch_size=128, num_clips=1, linear_probe=True,
      zero_shot=arg == 'agd', retrieval=arg == 'agd', text_length=16,
      image_size=32, audio_samples=4096)
  return c
