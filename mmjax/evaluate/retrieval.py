"""Cross-modal retrieval between one modality and text, both directions.

Rule for several captions per item and for duplicates: captions are compared as keys (a string,
or token ids as a tuple). The text pool is the set of distinct captions in first-seen order, so a
caption shared by many items (e.g. "a handwritten seven") is one candidate and one query, not many.
An (item, text) pair is correct when the text is one of that item's captions.
- `<modality>_to_text`: each item queries the distinct texts; its rank is that of its best-scored
  correct caption.
- `text_to_<modality>`: each distinct text queries all items; every item carrying it is correct,
  duplicated items are separate candidates.
Ranks are 1-based with pessimistic ties (see `metrics`).
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

from mmjax.evaluate import metrics


def caption_key(caption) -> Hashable:
  """A hashable key for a caption: stripped string, or a tuple of token ids."""
  if isinstance(caption, str):
    return caption.strip()
  if isinstance(caption, bytes):
    return caption.decode('utf-8').strip()
  return tuple(np.asarray(caption).reshape(-1).tolist())


def caption_positives(item_captions: Sequence[Sequence]) -> tuple[list, np.ndarray]:
  """Distinct caption keys `[texts]` and the positive mask `[items, texts]`.

  item_captions: per item, a list of its captions (strings or token-id arrays).
  """
  index: dict[Hashable, int] = {}
  rows = []
  for caps in item_captions:
    if isinstance(caps, (str, bytes)) or (isinstance(caps, np.ndarray) and caps.ndim == 1):
      caps = [caps]  # one caption for this item
    if len(caps) == 0:
      raise ValueError(f'item {len(rows)} has no caption: retrieval needs at least one per item.')
    keys = [caption_key(c) for c in caps]
    for k in keys:
      index.setdefault(k, len(index))
    rows.append([index[k] for k in keys])
  positives = np.zeros((len(rows), len(index)), bool)
  for i, cols in enumerate(rows):
    positives[i, cols] = True
  return list(index), positives


def evaluate(item_emb, text_emb, positives, modality: str) -> dict[str, dict[str, float]]:
  """Both directions of retrieval.

  item_emb `[items, dim]`, text_emb `[texts, dim]` (L2-normalised common-space embeddings),
  positives `[items, texts]`. Returns `{'<m>_to_text': {...}, 'text_to_<m>': {...}}`, each with
  `R@1`, `R@5`, `R@10`, `median_rank`, `mean_rank`.
  """
  item_emb = np.asarray(item_emb, np.float32)
  text_emb = np.asarray(text_emb, np.float32)
  positives = np.asarray(positives, bool)
  if item_emb.ndim != 2 or text_emb.ndim != 2 or item_emb.shape[1] != text_emb.shape[1]:
    raise ValueError(f'embeddings {item_emb.shape} and {text_emb.shape} must be [items, dim] and '
                     '[texts, dim] with the same dim.')
  scores = item_emb @ text_emb.T
  return {
      f'{modality}_to_text': metrics.retrieval_metrics(scores, positives),
      f'text_to_{modality}': metrics.retrieval_metrics(scores.T, positives.T),
  }
