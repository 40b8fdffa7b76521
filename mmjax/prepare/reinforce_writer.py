"""Writes a reinforced copy of a TFDS split: every stored example plus the extra features of
`reinforced.py`, as one ArrayRecord shard per split, with TFDS metadata.

The original features are copied byte for byte: a serialized `tf.train.Example` followed by a
second one holding only the extra features parses as one example with both (protobuf merges
concatenated messages), so images are not re-encoded.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import tensorflow_datasets as tfds

from mmjax.data import reinforced as R
from mmjax.data import tfds_writer

VERSION = '1.0.0'
REPORT = 'reinforce_report.json'


def extra_features(augmentations: int, dims: dict[str, int]) -> tfds.features.FeaturesDict:
  """The extra features for `augmentations` K stored crops and `{modality: embedding dim}`."""
  f = tfds.features
  out = {R.CROP: f.Tensor(shape=(augmentations, 4), dtype=np.float32),
         R.FLIP: f.Tensor(shape=(augmentations,), dtype=np.uint8)}
  for m, d in dims.items():
    rows = augmentations if m == 'image' else 1
    out[R.teacher_key(m)] = f.Tensor(shape=(rows, d), dtype=np.float32)
  return f.FeaturesDict(out)


def combined_features(original, extra) -> tfds.features.FeaturesDict:
  clash = sorted(set(original.keys()) & set(extra.keys()))
  if clash:
    raise ValueError(f'the dataset already has the feature {clash[0]!r}: reinforce the '
                     'original dataset, not a reinforced copy.')
  return tfds.features.FeaturesDict({**dict(original.items()), **dict(extra.items())})


def records(serialized: list[bytes], extra, values: dict[str, np.ndarray]):
  """Yields each stored example with its row of `values` (`{feature: [n, ...]}`) appended."""
  for i, raw in enumerate(serialized):
    yield raw + extra.serialize_example({k: v[i] for k, v in values.items()})


class SplitWriter:
  """Collects the examples of a dataset's splits under `folder` (the version directory)."""

  def __init__(self, folder: str, name: str):
    self.folder, self.name, self.lengths = folder, name, {}
    os.makedirs(folder, exist_ok=True)

  def write(self, split: str, chunks) -> int:
    """`chunks`: an iterable of record iterables; all go to one shard of `split`."""
    path = tfds_writer.shard_path(self.folder, self.name, split, 0, 1)
    count = tfds_writer.write_shard(path, (r for chunk in chunks for r in chunk))
    self.lengths[split] = [count]
    return count

  def finish(self, features, description: str, tokenizer: str | None, report: dict) -> None:
    tfds_writer.write_metadata(self.folder, self.name, VERSION, features, self.lengths,
                               description=description)
    if tokenizer:
      shutil.copyfile(tokenizer, os.path.join(self.folder, os.path.basename(tokenizer)))
    with open(os.path.join(self.folder, REPORT), 'w') as f:
      json.dump(report, f, indent=1)
