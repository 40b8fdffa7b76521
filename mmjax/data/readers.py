"""Random-access readers of one dataset split: TFDS, ArrayRecord files, and decoded in memory.

Features are named by their flattened TFDS path (`a/b`) and described by a `FeatureSpec`.
`read(indices, names)` returns columns: one array per feature, stacked `[n, ...]` when shapes
agree, else an object array (ragged media, lists of captions). Text is returned as `str`.
TFDS images and videos come back still encoded (an object column of `bytes`, or of per-frame
`bytes` arrays): the loader decodes them (`image_codec.py`) after choosing its crop. A prepared
TFDS split is read from its ArrayRecord or its TFRecord files (`tfrecord.py`), without TF.
"""

from __future__ import annotations

import abc
import dataclasses
import os

import grain
import numpy as np
import tensorflow_datasets as tfds

from mmjax.data import image_codec, records, tfds_compat
from mmjax.data.errors import DataError
from mmjax.data.tfrecord import TFRecordFiles

tfds_compat.patch_media_features()


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

  def visit(name, feat, multiple=False):
    if isinstance(feat, f.FeaturesDict):
      for key, sub in feat.items():
        visit(f'{name}/{key}' if name else key, sub, multiple)
      return
    if isinstance(feat, f.Sequence) and not isinstance(feat, f.Video):
      if isinstance(feat.feature, f.FeaturesDict):  # e.g. coco's captions: {text, id} each
        visit(name, feat.feature, True)
        return
      inner, multiple = feat.feature, True
    else:
      inner = feat
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


def _column(values: list, kind: str = '') -> np.ndarray:
  """Stacks one feature's values; text becomes str, ragged values an object array; encoded
  images (`bytes`) and videos (arrays of per-frame `bytes`) stay encoded, one object each."""
  if kind in ('image', 'video') and is_encoded(values[0]):
    return _objects([v if isinstance(v, bytes) else np.asarray(v, object) for v in values])
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
    return {name: _column([r[name] for r in rows], self.features[name].kind) for name in names}


def is_encoded(value) -> bool:
  """An encoded image (`bytes`) or video (a sequence of per-frame `bytes`)."""
  if isinstance(value, bytes):
    return True
  if isinstance(value, np.ndarray):
    return value.dtype.kind in 'SO' and value.size > 0 and isinstance(value.flat[0], bytes)
  return isinstance(value, (list, tuple)) and bool(value) and isinstance(value[0], bytes)


def decode_media(column: np.ndarray, kind: str) -> np.ndarray:
  """An encoded image/video column -> decoded uint8 arrays (stacked when shapes agree)."""
  if kind == 'image':
    return _column([image_codec.decode(v) for v in column])
  return _column([np.stack([image_codec.decode(f) for f in v]) for v in column])


class _KeepEncoded(tfds.decode.Decoder):
  """A TFDS decoder that returns an image's (or a video's frames') encoded bytes."""

  def decode_example(self, serialized_example):
    return serialized_example

  def decode_example_np(self, serialized_example):
    return serialized_example

  def decode_batch_example_np(self, serialized_examples):
    return serialized_examples


def _skip_decoding(features):
  """TFDS decoders that leave every Image (and Video, a sequence of images) encoded."""
  f = tfds.features
  out = {}
  for key, feat in features.items():
    if isinstance(feat, f.FeaturesDict):
      sub = _skip_decoding(feat)
      if sub:
        out[key] = sub
    elif isinstance(feat, (f.Image, f.Video)) and (
        isinstance(feat, f.Video) or feat.np_dtype == np.uint8):
      out[key] = _KeepEncoded()
  return out


def split_files(builder, split: str) -> tuple[str, list[str]]:
  """('array_record' | 'tfrecord' | ..., the split's files in shard order)."""
  info = builder.info.splits[split]
  fmt = builder.info.file_format
  fmt = fmt.value if fmt is not None else 'tfrecord'
  return fmt, [os.fspath(p) for p in info.filepaths]


class TfdsSource(Source):
  """A prepared TFDS split from its ArrayRecord or TFRecord files, parsed with TFDS's NumPy
  example parser; images and videos stay encoded for the loader's decoder."""

  def __init__(self, name: str, split: str, builder):
    fmt, files = split_files(builder, split)
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
      raise DataError(f'Dataset {name!r} split {split!r} is missing {len(missing)} of its '
                      f'{len(files)} files (first: {missing[0]}); prepare it again.')
    if fmt == 'array_record':
      self._data = grain.sources.ArrayRecordDataSource(files)
    elif fmt == 'tfrecord':
      self._data = TFRecordFiles(files)
    else:
      raise DataError(f'Dataset {name!r} was prepared as {fmt!r}, which mmjax does not read; '
                      'prepare it again with `tfds build NAME --file_format=array_record`.')
    self.file_format = fmt
    self._features = builder.info.features
    self._decoders = _skip_decoding(self._features)
    tokenizer = os.path.join(builder.data_dir, 'tokenizer.model')
    super().__init__(name, split, tfds_feature_specs(builder.info.features),
                     {k: v.num_examples for k, v in builder.info.splits.items()},
                     sum(os.path.getsize(f) for f in files),
                     tokenizer if os.path.isfile(tokenizer) else None)

  def _records(self, indices):
    return [self._features.deserialize_example_np(r, decoders=self._decoders)
            for r in self._data.__getitems__(indices)]

  @property
  def tfds_features(self):
    """The split's TFDS FeaturesDict (to write a copy with more features)."""
    return self._features

  def serialized(self, indices) -> list[bytes]:
    """The stored `tf.train.Example` bytes of the examples at `indices`, in order."""
    return list(self._data.__getitems__([int(i) for i in indices]))


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


def decoded_bytes(column: np.ndarray) -> int:
  """Bytes an encoded image/video column takes decoded (uint8 RGB), from the headers only; an
  unreadable header counts as nothing (that example stays encoded)."""
  total = 0
  for value in column:
    frames = 1 if isinstance(value, bytes) else len(value)
    first = value if isinstance(value, bytes) else (bytes(value[0]) if frames else b'')
    try:
      h, w = image_codec.image_size(first)
    except image_codec.CorruptImage:
      continue
    total += frames * h * w * 3
  return total


def _decode_each(column: np.ndarray) -> np.ndarray:
  """Encoded images -> an object column of decoded `[H, W, 3]` arrays, in place (each encoded
  value is dropped as soon as it is decoded); one that fails to decode stays encoded."""
  for i, value in enumerate(column):
    try:
      column[i] = image_codec.decode(value)
    except image_codec.CorruptImage:
      pass
  return column


class InMemorySource(Source):
  """Every example of `source` held in memory; reads are then array gathers. The split's
  records are read once (encoded media as stored, so memory ~ its size on disk); images and
  videos are also decoded once when all of them together take at most `decoded_mb` MiB decoded
  (from their headers; a split of small images), else they stay encoded and are decoded per
  batch like an uncached split's. Decoded images of different sizes stay ragged (never padded)."""

  def __init__(self, source: Source, chunk: int = 512, decoded_mb: float = float('inf')):
    super().__init__(source.name, source.split, source.features, source.splits,
                     source.disk_bytes, source.tokenizer_path)
    names = list(source.features)
    parts = [source.read(range(i, min(i + chunk, len(source))), names)
             for i in range(0, len(source), chunk)]
    columns = {n: _concat([p[n] for p in parts]) for n in names}
    del parts
    media = [n for n in names if source.features[n].kind in ('image', 'video')
             and len(columns[n]) and columns[n].dtype == object and is_encoded(columns[n][0])]
    need = sum(decoded_bytes(columns[n]) for n in media)
    self.decoded = bool(media) and need <= decoded_mb * 2**20
    if self.decoded:
      for n in media:
        if source.features[n].kind == 'image':
          column = _decode_each(columns[n])
          if all(isinstance(v, np.ndarray) and v.shape == column[0].shape for v in column):
            column = np.stack(list(column))  # one size (e.g. a digits set): one array
          columns[n] = column
        else:
          try:
            columns[n] = decode_media(columns[n], 'video')
          except image_codec.CorruptImage:  # keep them encoded: the loader skips damaged ones
            pass
    self._columns = columns

  def read(self, indices, names):
    indices = np.asarray(indices, np.int64)
    return {name: self._columns[name][indices] for name in names}

  def _records(self, indices):
    columns = self.read(indices, list(self._columns))
    return [{n: c[i] for n, c in columns.items()} for i in range(len(indices))]
