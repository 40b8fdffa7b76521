"""TFDS datasets without downloads: real metadata written from each dataset's TFDS builder code,
examples from `tfds.testing.mock_data`'s random generator.

    write_metadata(root, 'cifar10', {'train': 60, 'test': 40})
    with mocked(): ...   # mmjax.data reads root/cifar10 like a prepared dataset

`builder_from_directory` reads the written `dataset_info.json`/`features.json` (split sizes, the
features and their shapes), and `as_data_source` serves deterministic random examples of those
features (mock_data's generator, seeded by the example index).
"""

import contextlib
import os
from unittest import mock

import tensorflow_datasets as tfds
from tensorflow_datasets.core import dataset_builder
from tensorflow_datasets.testing import mocking


def write_metadata(root: str, name: str, splits: dict[str, int]) -> str:
  """Writes `root/<name>/<version>/` metadata with the given split sizes; returns that dir."""
  builder = tfds.builder(name, data_dir=root, file_format='array_record')
  infos = [tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0,
                               filename_template=tfds.core.ShardedFileTemplate(
                                   data_dir=builder.data_dir, dataset_name=builder.name, split=s,
                                   filetype_suffix='array_record'))
           for s, n in splits.items()]
  builder.info.set_splits(tfds.core.SplitDict(infos))
  os.makedirs(builder.data_dir, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)
  return builder.data_dir


class _RandomSource:
  """`__len__`, `__getitem__`, `__getitems__` over mock_data's generator of `features`."""

  def __init__(self, features, num_examples: int):
    self._gen = mocking.RandomFakeGenerator(features, num_examples)
    self._n = num_examples

  def __len__(self):
    return self._n

  def __getitem__(self, i):
    return self._gen[int(i)]

  def __getitems__(self, keys):
    return [self._gen[int(i)] for i in keys]


@contextlib.contextmanager
def mocked():
  """mock_data with the metadata read from disk (the real builder init) and random examples."""
  init = dataset_builder.DatasetBuilder.__init__

  def as_data_source(self, split, **kwargs):
    return _RandomSource(self.info.features, self.info.splits[split].num_examples)

  with tfds.testing.mock_data(as_data_source_fn=as_data_source), \
      mock.patch.object(dataset_builder.DatasetBuilder, '__init__', init):
    yield
