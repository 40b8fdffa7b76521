"""Helpers for the reinforcement tests: a tiny captioned image dataset written as TFDS
ArrayRecord (non-square images, its own SentencePiece model) and tiny teacher exports of it."""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from export.export_fixtures import make_run
from mmjax.data import tfds_writer, tokenizer as tokenizer_lib
from mmjax.export import export_run

NAME = 'tiny_caps'
CLASSES = ('zero', 'one', 'two')
SIZES = {'train': 10, 'test': 4}


def features():
  f = tfds.features
  return f.FeaturesDict({'image': f.Tensor(shape=(20, 28, 3), dtype=np.uint8, encoding='zlib'),
                         'caption': f.Text(), 'label': f.ClassLabel(names=CLASSES)})


def write_dataset(data_dir: str) -> str:
  """`data_dir/tiny_caps/1.0.0` with random images and captions naming their class."""
  folder = os.path.join(data_dir, NAME, '1.0.0')
  os.makedirs(folder)
  rng = np.random.default_rng(0)
  feats, lengths, captions = features(), {}, []
  for split, n in SIZES.items():
    rows = []
    for i in range(n):
      label = int(i % len(CLASSES))
      caption = f'a picture of the number {CLASSES[label]} seen {["up", "down"][i % 2]}.'
      captions.append(caption)
      rows.append(feats.serialize_example({
          'image': rng.integers(0, 256, (20, 28, 3)).astype(np.uint8), 'caption': caption,
          'label': label}))
    lengths[split] = [tfds_writer.write_shard(
        tfds_writer.shard_path(folder, NAME, split, 0, 1), rows)]
  tfds_writer.write_metadata(folder, NAME, '1.0.0', feats, lengths)
  tokenizer_lib.train_sentencepiece(captions, os.path.join(folder, 'tokenizer.model'), 64)
  return folder


def make_teacher(tmp: str, data_dir: str, seed: int, name: str) -> str:
  """A freshly initialised 1-layer demo model, exported (orbax) with the dataset's tokenizer."""
  tok = os.path.join(data_dir, NAME, '1.0.0', 'tokenizer.model')
  make_run(os.path.join(tmp, name), f'--config.seed={seed}', f'--config.text.tokenizer={tok}',
           f'--config.data_dir={data_dir}', f'--config.evaluation.datasets.digits.dataset={NAME}',
           '--config.evaluation.datasets.digits.modalities=image')
  out = os.path.join(tmp, f'{name}_export')
  export_run(os.path.join(tmp, name), out, 'orbax', quiet=True)
  return out
