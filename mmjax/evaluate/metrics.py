"""Ranks, top-k accuracy, retrieval recall and the confusion matrix (host-side numpy).

Tie rule (pessimistic; retrieval can break ties by candidate order instead, see
`retrieval_ranks`): the 1-based rank of the correct answer is
`1 + number of competing entries whose score is >= its score`. A tie therefore counts against the
model: constant logits over `c` classes give rank `c`, never a lucky rank 1. NaN scores are treated
as -inf (worse than every finite score), so a diverged model scores low instead of high.
All accuracies and recalls are fractions in [0, 1].
"""

from __future__ import annotations

import numpy as np

RECALL_AT = (1, 5, 10)


def _scores(x, ndim: int = 2) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != ndim:
    raise ValueError(f'expected a {ndim}-d score array, got shape {x.shape}.')
  return np.where(np.isnan(x), -np.inf, x)


def label_ranks(logits, labels) -> np.ndarray:
  """1-based rank `[n]` of `labels[i]` in `logits[i]`; logits `[n, classes]`, pessimistic ties."""
  s = _scores(logits)
  labels = np.asarray(labels).astype(np.int64).reshape(-1)
  n, c = s.shape
  if labels.shape[0] != n:
    raise ValueError(f'{labels.shape[0]} labels for {n} rows of logits.')
  if n and (labels.min() < 0 or labels.max() >= c):
    raise ValueError(f'labels must lie in [0, {c}), got values in [{labels.min()}, {labels.max()}].')
  true = s[np.arange(n), labels]
  return (s >= true[:, None]).sum(axis=1).astype(np.int64)  # counts the label itself: 1 + others


def topk_accuracy(logits, labels, k: int) -> float:
  """Fraction of rows whose label has pessimistic rank <= k; logits `[n, classes]`, labels `[n]`."""
  if k < 1:
    raise ValueError(f'k must be >= 1, got {k}.')
  ranks = label_ranks(logits, labels)
  if ranks.size == 0:
    raise ValueError('top-k accuracy of zero examples is undefined: the evaluation set is empty.')
  return float(np.mean(ranks <= k))


def predictions(logits) -> np.ndarray:
  """Predicted class `[n]`: argmax, the lowest class index winning a tie."""
  return np.argmax(_scores(logits), axis=1)


def confusion_matrix(preds, labels, num_classes: int) -> np.ndarray:
  """Counts `[classes, classes]`: row = true label, column = predicted class."""
  preds = np.asarray(preds, np.int64).reshape(-1)
  labels = np.asarray(labels, np.int64).reshape(-1)
  if preds.shape != labels.shape:
    raise ValueError(f'{preds.shape[0]} predictions for {labels.shape[0]} labels.')
  out = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(out, (labels, preds), 1)
  return out


def positives_from_groups(query_groups, candidate_groups) -> np.ndarray:
  """Positive mask `[queries, candidates]`: a pair is correct when both carry the same group id.

  Give each item and caption the id of its ground truth (e.g. the index of its caption's unique
  text): several captions of one item, and duplicated captions or items, then all count as correct.
  """
  q = np.asarray(query_groups).reshape(-1)
  c = np.asarray(candidate_groups).reshape(-1)
  return q[:, None] == c[None, :]


TIES = ('pessimistic', 'order')


def retrieval_ranks(scores, positives, ties: str = 'pessimistic') -> np.ndarray:
  """1-based rank `[queries]` of the best-scored positive among the negatives.

  scores, positives: `[queries, candidates]`; other positives never push a positive down.
  ties='pessimistic': rank = 1 + negatives scoring >= the best positive (a tie counts against).
  ties='order': a tie goes to the earlier candidate, i.e. the position of the first positive in
  a stable descending sort (what a top-k over scores in dataset order returns, CLIP_benchmark's
  rule; exact ties come from identical captions, whose embeddings are identical).
  """
  if ties not in TIES:
    raise ValueError(f'ties must be one of {TIES}, got {ties!r}.')
  s = _scores(scores)
  pos = np.asarray(positives, bool)
  if pos.shape != s.shape:
    raise ValueError(f'positives {pos.shape} must have the shape of the scores {s.shape}.')
  if not pos.any(axis=1).all():
    missing = int(np.flatnonzero(~pos.any(axis=1))[0])
    raise ValueError(f'query {missing} has no correct candidate: every query needs a positive.')
  best = np.where(pos, s, -np.inf).max(axis=1)
  if ties == 'pessimistic':
    return 1 + ((s >= best[:, None]) & ~pos).sum(axis=1).astype(np.int64)
  first = np.argmax(pos & (s == best[:, None]), axis=1)   # earliest positive at the best score
  before = np.arange(s.shape[1])[None, :] < first[:, None]
  ahead = (s > best[:, None]) | ((s == best[:, None]) & before)
  return 1 + (ahead & ~pos).sum(axis=1).astype(np.int64)


def rank_summary(ranks, recall_at=RECALL_AT) -> dict[str, float]:
  """`R@k` (fractions), `median_rank`, `mean_rank` of 1-based ranks `[queries]`."""
  ranks = np.asarray(ranks, np.float64).reshape(-1)
  if ranks.size == 0:
    raise ValueError('retrieval over zero queries is undefined: the evaluation set is empty.')
  out = {f'R@{k}': float(np.mean(ranks <= k)) for k in recall_at}
  out['median_rank'] = float(np.median(ranks))
  out['mean_rank'] = float(np.mean(ranks))
  return out


def retrieval_metrics(scores, positives, recall_at=RECALL_AT, ties: str = 'pessimistic'
                      ) -> dict[str, float]:
  """Recall@k and median/mean rank of retrieval with scores/positives `[queries, candidates]`."""
  return rank_summary(retrieval_ranks(scores, positives, ties), recall_at)


def mean_per_class_recall(preds, labels, num_classes: int) -> float:
  """Mean over the classes present in `labels` of the fraction of their examples predicted
  right (balanced accuracy); preds, labels `[n]`."""
  conf = confusion_matrix(preds, labels, num_classes)
  support = conf.sum(axis=1)
  present = support > 0
  if not present.any():
    raise ValueError('mean per-class recall of zero examples is undefined: the set is empty.')
  return float(np.mean(np.diag(conf)[present] / support[present]))
