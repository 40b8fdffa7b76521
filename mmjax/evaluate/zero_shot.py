"""Zero-shot classification: a text classifier built from prompts, no training.

Each class is embedded once per prompt template; the prompt embeddings are L2-normalised, averaged
and normalised again (the CLIP prompt ensemble). Several clips or crops of one video/audio example
are combined the same way. Logits are cosine similarities: normalised features @ weights.T.
"""

from __future__ import annotations

import numpy as np

from mmjax.evaluate import metrics

EPS = 1e-12


def l2_normalize(x, axis: int = -1) -> np.ndarray:
  """x / ||x|| along `axis` (float32); all-zero vectors stay zero."""
  x = np.asarray(x, np.float32)
  norm = np.linalg.norm(x, axis=axis, keepdims=True)
  return x / np.maximum(norm, EPS)


def classifier_weights(text_emb) -> np.ndarray:
  """Zero-shot weights `[classes, dim]` from prompt embeddings `[classes, templates, dim]`."""
  text_emb = np.asarray(text_emb)
  if text_emb.ndim != 3:
    raise ValueError(f'text embeddings must be [classes, templates, dim], got shape {text_emb.shape}.')
  return l2_normalize(l2_normalize(text_emb).mean(axis=1))


def average_clips(emb) -> np.ndarray:
  """One embedding `[batch, dim]` from several clips/crops `[batch, clips, dim]`."""
  emb = np.asarray(emb)
  if emb.ndim != 3:
    raise ValueError(f'clip embeddings must be [batch, clips, dim], got shape {emb.shape}.')
  return l2_normalize(l2_normalize(emb).mean(axis=1))


def logits(features, weights) -> np.ndarray:
  """Cosine logits `[n, classes]` of features `[n, dim]` against weights `[classes, dim]`."""
  features = np.asarray(features)
  weights = np.asarray(weights)
  if features.ndim != 2 or weights.ndim != 2 or features.shape[1] != weights.shape[1]:
    raise ValueError(f'features {features.shape} and weights {weights.shape} must be '
                     '[n, dim] and [classes, dim] with the same dim.')
  return l2_normalize(features) @ weights.T


def evaluate(features, labels, weights) -> dict:
  """Top-1, top-5 (see `metrics` for ties; top-5 is 1.0 with 5 classes or fewer), mean
  per-class recall, predictions (argmax, lowest index on ties) and the confusion matrix.

  features `[n, dim]`, labels `[n]`, weights `[classes, dim]`. Returns a dict with floats `top1`,
  `top5`, `mean_per_class_recall` and arrays `predictions` `[n]`, `confusion`
  `[classes, classes]`.
  """
  weights = np.asarray(weights)
  lg = logits(features, weights)
  preds = metrics.predictions(lg)
  confusion = metrics.confusion_matrix(preds, labels, weights.shape[0])
  return {
      'top1': metrics.topk_accuracy(lg, labels, 1),
      'top5': metrics.topk_accuracy(lg, labels, 5),
      'mean_per_class_recall': metrics.mean_per_class_recall(preds, labels, weights.shape[0]),
      'predictions': preds,
      'confusion': confusion,
  }
