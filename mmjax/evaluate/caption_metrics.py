"""Caption evaluation of a CoCa model: decode (greedy or beam), then score.

`caption_dataset` decodes every example of an eval dataset whose modality the model captions and
reports the share of captions that name the right digit (and no other; `mmjax_digits`), and
BLEU-4 and CIDEr-D (pycocoevalcap's pure-Python scorers) against the dataset's own caption of each
example. Captions are tokenized by lowercasing and splitting into words (not COCO's Java PTB
tokenizer). The command line is `python -m mmjax.evaluate.captioning`.
"""

from __future__ import annotations

import re

import jax
import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from mmjax.core import partitioning
from mmjax.core.tasks import Resolution
from mmjax.data import pipeline
from mmjax.evaluate.errors import EvalError
from mmjax.data.digits.render import CLASS_NAMES
from mmjax.models.caption_decoding import beam_decode, greedy_decode
from mmjax.train import state as state_lib
from mmjax.config.defaults import setting



def _names(value) -> tuple[str, ...]:
  if isinstance(value, str):
    return tuple(v.strip() for v in value.split(',') if v.strip())
  return tuple(value or ())



def config_entries(config) -> list[tuple[str, object]]:
  """`(name, entry)` of `config.evaluation.datasets`, by name."""
  datasets = setting(setting(config, 'evaluation'), 'evaluation.datasets')
  if not datasets:
    raise EvalError('config.evaluation.datasets is empty: add a dataset to evaluate on '
                    '(see configs/coca.py).')
  return [(name, datasets[name]) for name in sorted(datasets.keys())]


def _resolution(cfg) -> Resolution:
  return Resolution(image_size=cfg.get('image_size', None), num_frames=cfg.get('num_frames', None),
                    audio_samples=cfg.get('audio_samples', None),
                    text_length=cfg.get('text_length', None))


def _batches(cfg, config, split: str, modalities, resolution: Resolution):
  """Eval batches of one `config.evaluation.datasets` entry `cfg`."""
  return pipeline.make_eval_batches(
      cfg.dataset, split, modalities, resolution, config, batch_size=int(cfg.batch_size),
      num_clips=int(setting(cfg, 'evaluation.datasets.*.num_clips')),
      process_index=jax.process_index(), process_count=jax.process_count(),
      feature_map=tuple(dict(setting(cfg, 'evaluation.datasets.*.feature_map') or {}).items()))


def names_digit(caption: str, label: int, class_names=CLASS_NAMES) -> bool:
  """True when `caption` contains the word `class_names[label]` and no other class name."""
  words = set(re.findall(r'[a-z]+', caption.lower()))
  named = {i for i, n in enumerate(class_names) if n in words}
  return named == {int(label)}


def _words(text: str) -> str:
  return ' '.join(re.findall(r"[a-z0-9']+", text.lower()))


def caption_scores(generated: list[str], references: list[str]) -> dict:
  """BLEU-4 and CIDEr-D of `generated[i]` against the one reference `references[i]`."""
  if not generated:
    return {'bleu4': 0.0, 'cider': 0.0}
  gen = {i: [_words(g) or '<empty>'] for i, g in enumerate(generated)}
  ref = {i: [_words(r)] for i, r in enumerate(references)}
  bleu, _ = Bleu(4).compute_score(ref, gen, verbose=0)
  cider, _ = Cider().compute_score(ref, gen)
  return {'bleu4': float(bleu[3]), 'cider': float(cider)}


def caption_dataset(config, graphdef, params, mesh, cfg, tokenizer, beam_size: int = 1) -> dict:
  """Captions of every example of one eval dataset: `{modality: {right_digit_share, count,
  samples}}` for each of its modalities the model captions."""
  rules = partitioning.rules_from_config(config)
  res = _resolution(cfg)
  length = int(res.text_length or config.model.max_text_length)
  captions = state_lib.merge(graphdef, params).spec.captions
  out = {}
  for modality in [m for m in _names(cfg.modalities) if m in captions]:
    def run(params, x, modality=modality):
      with partitioning.axis_rules(mesh, rules):
        model = state_lib.merge(graphdef, params)
        if beam_size > 1:
          return beam_decode(model, modality, x, length, beam_size)
        return greedy_decode(model, modality, x, length)
    fn = jax.jit(run, out_shardings=partitioning.replicated(mesh))
    right, count, samples, generated, references = 0, 0, [], [], []
    for batch in _batches(cfg, config, cfg.split, (modality, 'text'), res):
      x = jax.make_array_from_process_local_data(partitioning.batch_sharding(mesh),
                                                 np.asarray(batch[modality]))
      texts = tokenizer.decode(np.asarray(fn(params, x)))
      refs = tokenizer.decode(batch['text'])
      for text, ref, ok, label in zip(texts, refs, batch['valid'],
                                      batch.get('label', [None] * len(texts))):
        if not ok:
          continue
        count += 1
        generated.append(text)
        references.append(ref)
        if label is not None:
          right += names_digit(text, label)
        if len(samples) < 8:
          samples.append({'caption': text, 'label': None if label is None else int(label)})
    out[modality] = {'right_digit_share': right / max(count, 1), 'count': count,
                     **caption_scores(generated, references), 'samples': samples}
  return out
