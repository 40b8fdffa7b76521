"""Random-access readers of one dataset split: TFDS, ArrayRecord files, and decoded in memory.

Features are named by their flattened TFDS path (`a/b`) and described by a `FeatureSpec`.
`read(indices, names)` returns columns: one array per feature, stacked `[n, ...]` when shapes
agree, else an object array (ragged media, lists of captions). Text is returned as `str`.
"""

from __future__ import annotations

import abc
import dataclasses
import glob
import os

import grain
import numpy as np
import tensorflow_datasets as tfds

from mmjax.data import records


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """A leaf feature: `kind` is image|video|audio|text|label|int|tensor; shape excludes the batch."""
  name: str
  kind: str
  shape: tuple
  dtype: str
  class_names: tuple[str, ...] = ()

  def describe(self) -> str:
    return f'{self.name} ({self.kind} {list(self.shape)} {self.dtype})'


def _kind(shape: tuple, dtype: np.dtype) -> str:
  """The kind of a plain tensor, from its dtype and per-example shape."""
  if dtype.kind in 'OUS':
    return 'text'
  if dtype == np.uint8 and len(shape) == 3:
    return 'image'
  if dtype == np.uint8 and len(shape) == 4:
    return 'video'
  if len(shape) == 1 and (dtype.kind == 'f' or dtype == np.int16):
    return 'audio'
  if len(shape) == 0 and dtype.kind in 'iu':
    return 'int'
  return 'tensor'


def tfds_feature_specs(features) -> dict[str, FeatureSpec]:
  """Flattens a TFDS FeaturesDict into `{'a/b': FeatureSpec}`."""
  f = tfds.features
  specs = {}

  def visit(name, feat):
    if isinstance(feat, f.FeaturesDict):
      for key, sub in feat.items():
        visit(f'{name}/{key}' if name else key, sub)
      return
    inner, multiple = (feat.feature, True) if isinstance(feat, f.Sequence) else (feat, False)
    shape, dtype = tuple(feat.shape), np.dtype(getattr(inner, 'np_dtype', np.object_))
    if isinstance(inner, f.ClassLabel):
      kind = 'label'
    elif isinstance(inner, f.Text):
      kind = 'text'
    elif isinstance(inner, (f.Video, f.Image, f.Audio)):
      kind = {f.Video: 'video', f.Image: 'image', f.Audio: 'audio'}[type(inner)]
    else:
      kind = _kind(tuple(inner.shape), dtype)
    if multiple and kind != 'text':
      kind = 'tensor'
    names = tuple(inner.names) if isinstance(inner, f.ClassLabel) else ()
    specs[name] = FeatureSpec(name, kind, shape, dtype.name, names)

  visit('', features)
  return specs


def _flatten(example: dict, prefix: str = '') -> dict:
  out = {}
  for key, value in example.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f'{prefix}{key}/'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def _objects(items) -> np.ndarray:
  """A 1-d object array holding `items` as they are (no broadcasting into extra axes)."""
  column = np.empty(len(items), object)
  for i, item in enumerate(items):
    column[i] = item
  return column


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _column(values: list) -> np.ndarray:
  """Stacks one feature's values; text becomes str, ragged values an object array."""
  if isinstance(values[0], (bytes, str)):
    return np.array([_text(v) for v in values], object)
  arrays = [np.asarray(v) for v in values]
  if arrays[0].dtype.kind in 'SUO':  # several captions per example
    return _objects([[_text(t) for t in a.reshape(-1).tolist()] for a in arrays])
  if all(a.shape == arrays[0].shape for a in arrays):
    return np.stack(arrays)
  return _objects(arrays)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
  """Joins columns read in chunks; an object column when their example shapes differ."""
  if all(p.dtype != object and p.shape[1:] == parts[0].shape[1:] for p in parts):
    return np.concatenate(parts)
  return _objects([item for p in parts for item in p])


class Source(abc.ABC):
  """One split of a dataset, readable by example index; subclasses say how records are read."""

  def __init__(self, name: str, split: str, features: dict[str, FeatureSpec],
               splits: dict[str, int], disk_bytes: int, tokenizer_path: str | None = None):
    self.name, self.split, self.features, self.splits = name, split, features, splits
    self.disk_bytes, self.tokenizer_path = disk_bytes, tokenizer_path

  def __len__(self) -> int:
    return self.splits[self.split]

  @abc.abstractmethod
  def _records(self, indices) -> list[dict]:
    """The raw (nested) records at `indices`, in order."""

  def read(self, indices, names) -> dict[str, np.ndarray]:
    """Columns `{name: [n, ...]}` of the examples at `indices`."""
    rows = [_flatten(r) for r in self._records([int(i) for i in indices])]
    return {name: _column([r[name] for r in rows]) for name in names}


class TfdsSource(Source):
  def __init__(self, name: str, split: str, builder):
    self._data = builder.as_data_source(split)
    files = glob.glob(os.path.join(builder.data_dir, f'*-{split}.array_record*'))
    tokenizer = os.path.join(builder.data_dir, 'tokenizer.model')
    super().__init__(name, split, tfds_feature_specs(builder.info.features),
                     {k: v.num_examples for k, v in builder.info.splits.items()},
                     sum(os.path.getsize(f) for f in files),
                     tokenizer if os.path.isfile(tokenizer) else None)

  def _records(self, indices):
    return self._data.__getitems__(indices)


class ArrayRecordSource(Source):
  def __init__(self, name: str, split: str, files: list[str]):
    self._data = grain.sources.ArrayRecordDataSource(files)
    folder = os.path.dirname(files[0])
    if os.path.isfile(os.path.join(folder, 'features.json')):
      self._features = tfds.features.FeatureConnector.from_config(folder)
      self._decode = self._features.deserialize_example_np
      features = tfds_feature_specs(self._features)
    else:
      self._decode = records.decode_example
      features = self._infer_features(os.path.join(folder, records.CLASSES_FILE))
    tokenizer = os.path.join(folder, 'tokenizer.model')
    super().__init__(name, split, features, {split: len(self._data)},
                     sum(os.path.getsize(f) for f in files),
                     tokenizer if os.path.isfile(tokenizer) else None)

  def _infer_features(self, classes_file: str) -> dict[str, FeatureSpec]:
    """Specs from the first record (its shapes; ragged features vary per example)."""
    example = records.decode_example(self._data[0])
    names = ()
    if os.path.isfile(classes_file):
      with open(classes_file) as f:
        names = tuple(line.strip() for line in f if line.strip())
    specs = {}
    for key, value in example.items():
      if isinstance(value, (str, list)):  # a list: several captions per example
        specs[key] = FeatureSpec(key, 'text', (None,) if isinstance(value, list) else (), 'str')
        continue
      value = np.asarray(value)
      kind = _kind(value.shape, value.dtype)
      if kind == 'int' and names:
        kind = 'label'
      specs[key] = FeatureSpec(key, kind, value.shape, value.dtype.name,
                               names if kind == 'label' else ())
    return specs

  def _records(self, indices):
    return [self._decode(r) for r in self._data.__getitems__(indices)]


class InMemorySource(Source):
  """Every example of `source` decoded once into columns; reads are then array gathers."""

  def __init__(self, source: Source, chunk: int = 512):
    super().__init__(source.name, source.split, source.features, source.splits,
                     source.disk_bytes, source.tokenizer_path)
    names = list(source.features)
    parts = [source.read(range(i, min(i + chunk, len(source))), names)
             for i in range(0, len(source), chunk)]
    self._columns = {n: _concat([p[n] for p in parts]) for n in names}

  def read(self, indices, names):
    indices = np.asarray(indices, np.int64)
    return {name: self._columns[name][indices] for name in names}

  def _records(self, indices):
    columns = self.read(indices, list(self._columns))
    return [{n: c[i] for n, c in columns.items()} for i in range(len(indices))]
