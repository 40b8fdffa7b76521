"""python -m mmjax.train --config=configs/published.py:lit:runs/openai_b32 --workdir=runs/lit
python -m mmjax.train --config=configs/published.py:finetune:runs/openai_b32 --workdir=runs/ft
python -m tools.upcycle --dense_workdir=runs/openai_b32 \
    --config=configs/published.py:moe:runs/openai_b32 --workdir=runs/clip_moe

Runs that start from a published model imported with tools.import_weights (the export OUT after
the second colon) on `mmjax_digits` image-text, at the model's own input size and with its own
preprocessing (config.data.eval_resize, pixel mean/std):

- `lit:OUT`: LiT, a locked image tower. The image path (embedding, class token, ln_pre, encoder,
  projection) comes from OUT and is frozen (`optimizer.freeze`, `init_from_only`); the text
  tower, of the imported architecture, starts from scratch with the dataset's SentencePiece
  vocabulary, mean-pooled.
- `finetune:OUT`: every parameter from OUT, all trained, OUT's own tokenizer.
- `moe:OUT`: CLIP-MoE, every second MLP of both towers upcycled into 4 experts (top-1,
  normalised combine weights, capacity for every token, so step 0 computes what OUT does);
  tools.upcycle writes step 0.

Without an argument it is `lit` on the CLIP-shaped towers of configs/siglip.py:clip, and the
run stops before writing anything, naming the import it needs.
"""

import os

from mmjax import config as config_lib
from mmjax.config import import_config_module
from mmjax.config.defaults import base_config, eval_dataset, task

DIGITS = 'mmjax_digits'
VARIANTS = ('lit', 'finetune', 'moe')
HINT = ('a published model imported with python -m tools.import_weights (e.g. hf_clip '
        '--input=clip-vit-base-patch32 --output=runs/openai_b32), passed as '
        '--config=configs/published.py:lit:runs/openai_b32')


def image_path(model) -> tuple[str, ...]:
  """The flat-name patterns of the image tower's parameters (those `model` has)."""
  towers = model.get('towers', {}).get('image', {})
  pooling = towers.get('pooling', '') or model.pooling
  pats = [r'embed_image\..*', r'encoder_image\..*', r'proj_image\..*']
  pats += [r'cls_image'] if pooling == 'cls' else []
  pats += [r'ln_pre_image\..*'] if towers.get('ln_pre', False) else []
  pats += [r'map_head_image\..*'] if pooling == 'map' else []
  return tuple(pats)


def get_config(arg=None):
  variant, _, export = (arg or 'lit:').partition(':')
  if variant not in VARIANTS or (arg and not export):
    raise ValueError('configs/published.py takes VARIANT:EXPORT with VARIANT one of '
                     f'{", ".join(VARIANTS)} and EXPORT a tools.import_weights output, got {arg!r}.')
  if export:
    path = os.path.join(export, 'config.json')
    if not os.path.isfile(path):
      raise ValueError(f'{path} does not exist: import a model first (python -m '
                       'tools.import_weights ... --output=EXPORT).')
    with open(path) as f:
      published = config_lib.config_from_json(f.read())
    export = os.path.abspath(export)
  else:
    here = os.path.dirname(os.path.abspath(__file__))
    published = import_config_module(os.path.join(here, 'siglip.py')).get_config('clip')
  c = base_config()
  c.total_steps = 1000
  c.checkpoint_every = 500
  c.log_every = 20
  c.model = published.model
  c.data.eval_resize = published.data.get('eval_resize', '')
  c.optimizer.learning_rate = 1e-4
  c.optimizer.warmup_steps = 50
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0
  size = c.model.max_grid * c.model.patch_size
  length = c.model.max_text_length
  c.init_from_hint = HINT
  if variant == 'lit':
    c.init_from = export
    c.init_from_only = image_path(c.model)
    c.optimizer.freeze = image_path(c.model)
    t = c.model.towers.text                # text from scratch: digits' vocabulary, mean-pooled
    t.pooling, t.causal, t.padding_mask = 'mean', False, True
    c.model.vocab_size, c.model.max_text_length = 512, 32
    length = 16
    c.text.tokenizer = ''
  else:
    tokenizer = published.text.tokenizer
    c.text.tokenizer = (tokenizer if not tokenizer or os.path.isabs(tokenizer)
                        else os.path.join(export, tokenizer))
    if variant == 'finetune':
      c.init_from = export
    else:
      moe = c.model.moe
      moe.num_experts, moe.top_k, moe.every, moe.normalize_combine_weights = 4, 1, 2, True
      moe.capacity_factor = 4.0   # = num_experts: no token is dropped, as in the dense model
  c.tasks.image_text = task(DIGITS, 'image,text', 32, contrast='image-text', image_size=size,
                            text_length=length)
  c.evaluation.datasets.digits = eval_dataset(DIGITS, 'image', split='test', batch_size=64,
                                              image_size=size, text_length=length)
  return c
