"""Parity: each exported artifact's embeddings against the training checkpoint's, on one batch.

An artifact is an embedding function `fn(modality, inputs) -> [n, embed_dim]` (`inputs`: the
modality's arrays, as `inputs.input_specs` names them). Per format and modality the report
gives the max abs difference and the min cosine between matching rows; a format passes when
every modality is within the tolerance of the exported dtype. When the batch has labels and
the dataset class names, a zero-shot eval-equivalent runs too: prompt-ensemble classifier from
the artifact's own text embeddings, top-1 on the batch, and agreement of its predictions with
the checkpoint's (reported, not part of pass/fail: a small batch moves top-1 in coarse steps).
"""

from __future__ import annotations

import numpy as np

from mmjax.core import modalities

from mmjax.evaluate import templates as templates_lib
from mmjax.evaluate import zero_shot
from mmjax.config.defaults import setting

# Tolerances by exported dtype. float32 artifacts compute the same function (only XLA's fusion
# of baked-in constants may differ); bfloat16 ones round every weight to 8 bits of mantissa.
TOLERANCES = {'float32': {'max_abs_diff': 1e-5, 'min_cosine': 1.0 - 1e-5},
              'bfloat16': {'max_abs_diff': 2e-2, 'min_cosine': 1.0 - 2e-2}}


def compare(reference: np.ndarray, got: np.ndarray, tolerance: dict) -> dict:
  """Max abs diff and min row cosine of `got` vs `reference` `[n, dim]`, and whether they pass."""
  reference, got = np.asarray(reference, np.float64), np.asarray(got, np.float64)
  if reference.shape != got.shape:
    return {'max_abs_diff': None, 'min_cosine': None, 'pass': False,
            'error': f'shape {list(got.shape)} != reference {list(reference.shape)}'}
  diff = float(np.max(np.abs(reference - got)))
  norms = np.linalg.norm(reference, axis=-1) * np.linalg.norm(got, axis=-1)
  cos = float(np.min(np.sum(reference * got, axis=-1) / np.maximum(norms, 1e-12)))
  ok = bool(np.isfinite(got).all() and diff <= tolerance['max_abs_diff']
            and cos >= tolerance['min_cosine'])
  return {'max_abs_diff': diff, 'min_cosine': cos, 'pass': ok}


def modality_inputs(batch: dict, modality: str) -> dict:
  return {k: batch[k] for k in modalities.array_specs(modality, {})}  # core/modalities.py


def zero_shot_prompts(entry, class_names, tokenizer, modalities, length: int) -> dict:
  """`{modality: (text inputs [classes * templates, length], classes, templates)}` for the
  non-text modalities, with the templates the evaluation would use."""
  overrides = (dict(setting(entry, 'evaluation.datasets.*.templates') or {})
               if entry is not None else {})
  out = {}
  for m in modalities:
    if m == 'text' or m not in templates_lib.TEMPLATES:
      continue
    ts = templates_lib.get_templates(m, overrides.get(m))
    prompts = templates_lib.build_prompts(class_names, ts)
    ids, mask = tokenizer.encode([p for row in prompts for p in row], length)
    out[m] = ({'text': ids, 'text_mask': mask}, len(class_names), len(ts))
  return out


def _zero_shot(fn, embeddings: dict, labels, prompts: dict) -> dict:
  """`{modality: predictions [n]}` and top-1 from the artifact's text classifier."""
  out = {}
  for m, (text, classes, count) in prompts.items():
    weights = zero_shot.classifier_weights(fn('text', text).reshape(classes, count, -1))
    result = zero_shot.evaluate(embeddings[m], labels, weights)
    out[m] = (np.asarray(result['predictions']), float(result['top1']))
  return out


def check(reference, artifacts: dict, batch: dict, modalities, dtype: str,
          prompts: dict | None = None) -> dict:
  """Runs the reference and every artifact on `batch`; returns the parity report section."""
  tol = TOLERANCES[dtype]
  ref = {m: np.asarray(reference(m, modality_inputs(batch, m))) for m in modalities}
  labels = batch.get('label')
  use_zs = bool(prompts) and labels is not None
  ref_zs = _zero_shot(reference, ref, labels, prompts) if use_zs else {}
  formats = {}
  for name, fn in artifacts.items():
    got = {m: np.asarray(fn(m, modality_inputs(batch, m))) for m in modalities}
    result = {m: compare(ref[m], got[m], tol) for m in modalities}
    if use_zs:
      zs = _zero_shot(fn, got, labels, prompts)
      result['zero_shot'] = {m: {'top1': zs[m][1], 'reference_top1': ref_zs[m][1],
                                 'agreement': float(np.mean(zs[m][0] == ref_zs[m][0]))}
                             for m in zs}
    result['pass'] = all(result[m]['pass'] for m in modalities)
    formats[name] = result
  return {'tolerance': tol, 'formats': formats,
          'pass': all(f['pass'] for f in formats.values())}
