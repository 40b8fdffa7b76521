"""Every caption of every item of a retrieval split, read straight from the dataset.

The eval batches carry one caption per item (the first); retrieval as the literature reports it
(COCO 5k: about 25k captions, Flickr30k 1k: 5k) scores all of them, so the caption feature is
read here for all items, in dataset order, and tokenized as the model reads text.
"""

from __future__ import annotations

import numpy as np

from mmjax.data import features as features_lib
from mmjax.data import sources
from mmjax.data.options import DataOptions
from mmjax.evaluate import retrieval


def read_captions(dataset: str, split: str, feature_map, config, chunk: int = 1024
                  ) -> list[list[str]]:
  """Per item of `dataset`/`split` (dataset order), the list of its captions."""
  options = DataOptions.from_config(config)
  source = sources.open_source(dataset, split, options.data_dir)
  mapping = features_lib.resolve(('text',), tuple(feature_map), source.features, dataset=dataset,
                                 who=f'Retrieval on {dataset!r}', label='no')
  name, out = mapping['text'], []
  for start in range(0, len(source), chunk):
    column = source.read(np.arange(start, min(start + chunk, len(source))), [name])[name]
    for value in column:
      caps = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
      out.append([c.decode('utf-8') if isinstance(c, bytes) else str(c) for c in caps])
  return out


def tokenized_pool(item_captions: list[list[str]], tokenizer, length: int, dedup: bool = False):
  """The caption pool as the model reads it (token ids) and which items its texts belong to.

  Every caption in dataset order (the default, CLIP_benchmark's rule) or, with `dedup`, the
  distinct token-id sequences (see `retrieval`). Returns ids `[texts, length]`, mask
  `[texts, length]` and positives `[items, texts]`.
  """
  flat = [c for caps in item_captions for c in caps]
  ids, mask = tokenizer.encode(flat, length)
  rows, start = [], 0
  for caps in item_captions:
    rows.append([ids[i][mask[i] > 0] for i in range(start, start + len(caps))])
    start += len(caps)
  keys, positives = retrieval.caption_positives(rows, dedup=dedup)
  if not dedup:   # every caption, as tokenized
    return np.asarray(ids, np.int32), np.asarray(mask, np.int32), positives
  pool = np.zeros((len(keys), length), np.int32)
  for i, k in enumerate(keys):
    pool[i, :len(k)] = k
  return pool, (pool > 0).astype(np.int32), positives


def distinct(ids: np.ndarray, mask: np.ndarray, text_item: np.ndarray, num_items: int):
  """The de-duplicated pool (`retrieval.DISTINCT`) of an every-caption pool: the first row of each
  distinct token-id sequence `[texts]` and positives `[items, texts]` (every item carrying it)."""
  first: dict = {}
  cols = []
  for j in range(len(ids)):
    key = tuple(np.asarray(ids[j])[np.asarray(mask[j]) > 0].tolist())
    cols.append(first.setdefault(key, len(first)))
  rows = np.zeros(len(first), np.int64)
  for j in reversed(range(len(ids))):
    rows[cols[j]] = j
  positives = np.zeros((num_items, len(first)), bool)
  positives[np.asarray(text_item), np.asarray(cols)] = True
  return rows, positives
