"""Cross-modal retrieval between one modality and text, both directions.

Default rule (`EVERY_CAPTION`, CLIP_benchmark's metrics/zeroshot_retrieval.py and big_vision's
image_text retrieval evaluator): every caption of every item is its own candidate and its own
query, in dataset order, and exactly the captions of an item are correct for it.
- `<modality>_to_text`: each item queries all captions; it is right at k when one of its own
  captions is among the top k (its rank is that of its best-scored caption).
- `text_to_<modality>`: each caption queries all items; only its own item is correct.

Option (`DISTINCT`, `dedup=True`): captions are compared as keys (a string, or token ids as a
tuple) and the pool is the set of distinct captions in first-seen order, so a caption shared by
many items (e.g. "a handwritten seven") is one candidate and one query, correct for every item
carrying it. Not comparable with published numbers; named in the report when used.
Ranks are 1-based. Exact ties (identical captions have identical embeddings) go to the earlier
candidate in dataset order, as a top-k over the scores returns them (CLIP_benchmark); with
`dedup` there are no such ties and ties count against the model (see `metrics`).
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


EVERY_CAPTION = 'every caption a candidate (CLIP_benchmark, big_vision)'
DISTINCT = 'distinct captions (de-duplicated; not comparable with published numbers)'


def rule(dedup: bool) -> str:
  return DISTINCT if dedup else EVERY_CAPTION


def caption_positives(item_captions: Sequence[Sequence], dedup: bool = False
                      ) -> tuple[list, np.ndarray]:
  """Caption keys `[texts]` and the positive mask `[items, texts]`.

  item_captions: per item, a list of its captions (strings or token-id arrays). Without `dedup`
  the texts are every caption in dataset order; with it, the distinct keys in first-seen order.
  """
  index: dict[Hashable, int] = {}
  keys_out: list = []
  rows = []
  for caps in item_captions:
    if isinstance(caps, (str, bytes)) or (isinstance(caps, np.ndarray) and caps.ndim == 1):
      caps = [caps]  # one caption for this item
    if len(caps) == 0:
      raise ValueError(f'item {len(rows)} has no caption: retrieval needs at least one per item.')
    keys = [caption_key(c) for c in caps]
    cols = []
    for k in keys:
      if dedup:
        if k not in index:
          index[k] = len(keys_out)
          keys_out.append(k)
        cols.append(index[k])
      else:
        cols.append(len(keys_out))
        keys_out.append(k)
    rows.append(cols)
  positives = np.zeros((len(rows), len(keys_out)), bool)
  for i, cols in enumerate(rows):
    positives[i, cols] = True
  return keys_out, positives


def evaluate(item_emb, text_emb, positives, modality: str, ties: str = 'order'
             ) -> dict[str, dict[str, float]]:
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
      f'{modality}_to_text': metrics.retrieval_metrics(scores, positives, ties=ties),
      f'text_to_{modality}': metrics.retrieval_metrics(scores.T, positives.T, ties=ties),
  }
