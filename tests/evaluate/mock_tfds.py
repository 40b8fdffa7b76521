"""TFDS datasets without downloads: prepared datasets written from each dataset's TFDS builder
code (its features and metadata), examples from `tfds.testing.mock_data`'s random generator.

    write_metadata(root, 'cifar10', {'train': 60, 'test': 40})
    with mocked(): ...   # mmjax.data reads root/cifar10 like a prepared dataset

`builder_from_directory` reads the written `dataset_info.json`/`features.json` and mmjax's TFDS
reader reads the shards, the path a user's prepared dataset takes.
"""

import contextlib
import io
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.testing import mocking

from mmjax.data import tfds_compat, tfds_writer

tfds_compat.patch_media_features()


def write_metadata(root: str, name: str, splits: dict[str, int]) -> str:
  """Writes `root/<name>/<version>/` as `tfds build` would (ArrayRecord shards + metadata) with
  the given split sizes, examples from mock_data's generator; returns that dir."""
  builder = tfds.builder(name, data_dir=root, file_format='array_record')
  features = builder.info.features
  os.makedirs(builder.data_dir, exist_ok=True)
  lengths = {}
  for i, (split, count) in enumerate(splits.items()):
    fake = mocking.RandomFakeGenerator(features, count, seed=1000 * i,
                                       constant_dynamic_shape=True)
    records = [features.serialize_example(_encoded(features, ex)) for ex in fake]
    path = tfds_writer.shard_path(builder.data_dir, builder.name, split, 0, 1, 'array_record')
    tfds_writer.write_shard(path, records, 'array_record')
    lengths[split] = [len(records)]
  tfds_writer.write_metadata(builder.data_dir, builder.name, str(builder.version), features,
                             lengths, 'array_record')
  return builder.data_dir


def fake_examples(root: str, name: str, count: int, seed: int = 0) -> list[dict]:
  """`count` examples of TFDS dataset `name` from mock_data's generator, to edit before
  `write_examples` (e.g. to give each example its own number of objects)."""
  features = tfds.builder(name, data_dir=root, file_format='array_record').info.features
  return list(mocking.RandomFakeGenerator(features, count, seed=seed,
                                          constant_dynamic_shape=True))


def write_examples(root: str, name: str, splits: dict[str, list[dict]]) -> str:
  """Like `write_metadata`, with the given examples per split; returns the dataset dir."""
  builder = tfds.builder(name, data_dir=root, file_format='array_record')
  features = builder.info.features
  os.makedirs(builder.data_dir, exist_ok=True)
  lengths = {}
  for split, examples in splits.items():
    records = [features.serialize_example(_encoded(features, ex)) for ex in examples]
    path = tfds_writer.shard_path(builder.data_dir, builder.name, split, 0, 1, 'array_record')
    tfds_writer.write_shard(path, records, 'array_record')
    lengths[split] = [len(records)]
  tfds_writer.write_metadata(builder.data_dir, builder.name, str(builder.version), features,
                             lengths, 'array_record')
  return builder.data_dir


def _encoded(features, example: dict) -> dict:
  """Images PNG-encoded with PIL (TFDS's own encoder needs TensorFlow)."""
  out = {}
  for key, value in example.items():
    if isinstance(features[key], tfds.features.Image):
      buffer = io.BytesIO()
      pixels = np.asarray(value, np.uint8)
      gray = features[key].shape[-1] == 1   # e.g. dsprites, smallnorb: [h, w, 1]
      Image.fromarray(pixels.reshape(pixels.shape[:2]) if gray else
                      pixels.reshape(pixels.shape[:2] + (3,))).save(buffer, 'PNG')
      value = buffer.getvalue()
    out[key] = value
  return out


@contextlib.contextmanager
def mocked():
  """Kept for the tests' `with` blocks: the datasets are real files now, nothing to patch."""
  yield
