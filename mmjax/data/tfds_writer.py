"""Writes a prepared TFDS dataset without TensorFlow: shards of serialized `tf.train.Example`s
plus `dataset_info.json` / `features.json`, readable by `tfds.builder_from_directory` and by
mmjax by name (`sources.py`). Used by `tools/convert_data.py` (ArrayRecord) and by tests
(ArrayRecord or TFRecord, as `tfds build` writes them).

Layout: `DATA_DIR/NAME/VERSION/NAME-SPLIT.FORMAT-SSSSS-of-NNNNN` (FORMAT array_record|tfrecord).
"""

from __future__ import annotations

import os
from typing import Iterable

import tensorflow_datasets as tfds
from etils import epath

from mmjax.data.tfrecord import write_tfrecord

FORMATS = ('array_record', 'tfrecord')
TEMPLATE = '{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}'


def shard_path(folder: str, name: str, split: str, shard: int, num_shards: int,
               file_format: str = 'array_record') -> str:
  return os.path.join(folder, f'{name}-{split}.{file_format}-{shard:05d}-of-{num_shards:05d}')


def write_shard(path: str, records: Iterable[bytes], file_format: str = 'array_record') -> int:
  """Writes serialized examples to one shard file (via a temporary name, so a shard on disk is
  always complete); returns the count."""
  if file_format not in FORMATS:
    raise ValueError(f'file_format must be one of {FORMATS}, got {file_format!r}')
  tmp = path + '.incomplete'
  if file_format == 'tfrecord':
    count = write_tfrecord(tmp, records)
  else:
    from array_record.python.array_record_module import ArrayRecordWriter  # lazy: optional C++ dep
    writer = ArrayRecordWriter(tmp, 'group_size:1')
    count = 0
    try:
      for record in records:
        writer.write(record)
        count += 1
    finally:
      writer.close()
  os.replace(tmp, path)
  return count


def _size(path: str) -> int:
  return epath.Path(path).stat().length if '://' in path else os.path.getsize(path)


def write_metadata(folder: str, name: str, version: str, features,
                   shard_lengths: dict[str, list[int]], file_format: str = 'array_record',
                   description: str = '') -> None:
  """`dataset_info.json` + `features.json` for the shards written under `folder` (named by
  `shard_path`); `shard_lengths[split]` lists each shard's example count in shard order."""
  infos = []
  for split, lengths in shard_lengths.items():
    files = [shard_path(folder, name, split, i, len(lengths), file_format)
             for i in range(len(lengths))]
    infos.append(tfds.core.SplitInfo(name=split, shard_lengths=list(lengths),
                                     num_bytes=sum(_size(f) for f in files)))
  template = tfds.core.ShardedFileTemplate(data_dir=folder, template=TEMPLATE,
                                           dataset_name=name, filetype_suffix=file_format)
  tfds.folder_dataset.write_metadata(data_dir=folder, features=features, split_infos=infos,
                                     version=version, filename_template=template,
                                     check_data=False, description=description)
