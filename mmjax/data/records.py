"""The simple ArrayRecord example format, for data that was not written by TFDS.

Each record is the bytes of one `numpy.savez` archive holding the example's features as named
arrays (nested names written `a/b`): images `[H, W, C]` uint8, videos `[T, H, W, C]` uint8,
audio `[samples]` float32 or int16, text a 0-d (or 1-d, for several captions) str array, labels a
0-d integer array. Optional `classes.txt` beside the files gives the label names, one a line.
Read back with `allow_pickle=False`: records cannot carry code.

Datasets written by TFDS (a `features.json` beside the files) are read with TFDS's own decoder
instead; see `sources.py`.
"""

from __future__ import annotations

import io
import os
from typing import Iterable, Mapping

import numpy as np

CLASSES_FILE = 'classes.txt'


def encode_example(example: Mapping[str, object]) -> bytes:
  """One example (flat dict name -> array-like) -> record bytes."""
  buffer = io.BytesIO()
  np.savez(buffer, **{name: np.asarray(value) for name, value in example.items()})
  return buffer.getvalue()


def decode_example(record: bytes) -> dict[str, object]:
  """Record bytes -> flat dict; 0-d arrays become Python scalars/str, 1-d str arrays lists."""
  out = {}
  with np.load(io.BytesIO(record), allow_pickle=False) as archive:
    for name in archive.files:
      value = archive[name]
      if value.dtype.kind in 'US':
        value = value.item() if value.ndim == 0 else [str(v) for v in value]
      elif value.ndim == 0:
        value = value.item()
      out[name] = value
  return out


def write_records(path: str, examples: Iterable[Mapping[str, object]],
                  class_names: list[str] | None = None) -> int:
  """Writes examples to one ArrayRecord file (and `classes.txt`); returns the count."""
  # lazy: array_record is a heavy native dependency, needed only to write shards
  from array_record.python.array_record_module import ArrayRecordWriter
  writer = ArrayRecordWriter(os.fspath(path), 'group_size:1')
  count = 0
  try:
    for example in examples:
      writer.write(encode_example(example))
      count += 1
  finally:
    writer.close()
  if class_names is not None:
    with open(os.path.join(os.path.dirname(os.fspath(path)), CLASSES_FILE), 'w') as f:
      f.write('\n'.join(class_names) + '\n')
  return count
