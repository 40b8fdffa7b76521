"""Dataset names -> readers (`readers.py`) of one split, opened once per process.

Dataset names:
  `mmjax_digits`                 the embedded dataset (built on first use)
  `name[/config][:version]`      a TFDS dataset prepared under the data dir, from its TFRecord
                                 or ArrayRecord files (read without TF; a dataset with one
                                 config may omit it; one not prepared gets the `tfds build`
                                 command to run)
  `arrayrecord:<glob>`           ArrayRecord files; `{split}` in the glob is replaced by the split.
                                 Records are TFDS-serialized examples when `features.json` lies
                                 beside the files, else the simple format of `records.py`.
A split at most `config.data.cache_mb` MiB on disk is held in memory (`InMemorySource`): its
records as stored, and its images decoded too when they take at most `cache_mb` MiB decoded
(judged from their headers), so a split of large photos stays encoded and costs what it does
uncached, and memory stays bounded by about `cache_mb`.
"""

from __future__ import annotations

import functools
import glob
import os
import threading

import tensorflow_datasets as tfds

from mmjax.data.digits import builder as digits_builder
from mmjax.data.errors import DataError  # re-exported: callers catch sources.DataError
from mmjax.data.readers import ArrayRecordSource, InMemorySource, Source, TfdsSource


def local_datasets(root: str) -> list[str]:
  """Names of the datasets prepared under `root` (those with a dataset_info.json)."""
  found = set()
  for info in glob.glob(os.path.join(root, '*', '*', 'dataset_info.json')) + glob.glob(
      os.path.join(root, '*', '*', '*', 'dataset_info.json')):
    parts = os.path.relpath(info, root).split(os.sep)[:-2]
    found.add('/'.join(parts))
  return sorted(found)


def _unknown(name: str, root: str, why: str) -> DataError:
  have = ', '.join(local_datasets(root)) or 'none'
  if name.endswith('_reinforced'):   # MobileCLIP's copy with teacher embeddings
    return DataError(
        f'Unknown dataset {name!r}: {why}. Prepared under {root}: {have}. Write it with the '
        f'teachers\' embeddings first: `python -m tools.reinforce_data --teacher=EXPORT '
        f'--dataset={name[:-len("_reinforced")]} --output={root}` (EXPORT: an mmjax export, '
        'or a published model imported with tools.import_weights).')
  return DataError(
      f'Unknown dataset {name!r}: {why}. Prepared under {root}: {have}. Build the embedded one '
      f'with `python -m tools.build_data digits --data_dir={root}`, prepare a TFDS dataset there '
      "(`tfds build NAME`), or name ArrayRecord files as 'arrayrecord:<glob>'.")


def _versions(folder: str) -> list[str]:
  return [v for v in (os.listdir(folder) if os.path.isdir(folder) else [])
          if os.path.isfile(os.path.join(folder, v, 'dataset_info.json'))]


def _is_tfds_dataset(base: str) -> bool:
  """Whether TFDS has a builder called `base` (some, e.g. ucf101, only register when TF is
  installed, so their checksum or dataset folders in the TFDS package count too)."""
  package = os.path.dirname(tfds.__file__)
  return (base in tfds.list_builders(with_community_datasets=False)
          or os.path.isfile(os.path.join(package, 'url_checksums', f'{base}.txt'))
          or os.path.isdir(os.path.join(package, 'datasets', base)))


def _not_prepared(name: str, root: str) -> DataError | None:
  """The one-sentence `tfds build` advice when `name` is a TFDS dataset not prepared here."""
  base = name.split(':')[0].split('/')[0]
  if not _is_tfds_dataset(base):
    return None
  return DataError(
      f'TFDS dataset {name!r} is not prepared under {root}: run `tfds build '
      f'{name.split(":")[0]} --data_dir={root}` (building needs TensorFlow installed; mmjax '
      'then reads its TFRecord or ArrayRecord files without it).')


@functools.lru_cache(maxsize=64)
def _tfds_builder(name: str, root: str):
  if name.split(':')[0] == digits_builder.NAME:
    return digits_builder.build(root)
  base, _, version = name.partition(':')
  folder = os.path.join(root, *base.split('/'))
  if not version:
    versions = _versions(folder)
    configs = [c for c in (os.listdir(folder) if os.path.isdir(folder) else [])
               if _versions(os.path.join(folder, c))]
    if not versions and len(configs) == 1:   # 'coco_captions' -> its one config, '2014'
      folder = os.path.join(folder, configs[0])
      versions = _versions(folder)
    if not versions:
      if configs:
        raise DataError(f'Dataset {name!r} has several prepared configs under {folder}: '
                        f'{sorted(configs)}; name one, e.g. {base}/{sorted(configs)[0]}.')
      raise _not_prepared(name, root) or _unknown(name, root,
                                                  f'no prepared version under {folder}')
    version = max(versions, key=lambda v: tuple(int(x) for x in v.split('.') if x.isdigit()))
  path = os.path.join(folder, version)
  if not os.path.isfile(os.path.join(path, 'dataset_info.json')):
    raise _not_prepared(name, root) or _unknown(name, root, f'{path} does not exist')
  return tfds.builder_from_directory(path)


def read_root(data_dir: str | None = None) -> str:
  """The data dir datasets are read from (`mmjax/data/digits/builder.data_root`). One named by
  `config.data_dir` must exist: a mistyped one is refused rather than read as empty (and filled
  with `mmjax_digits`). $TFDS_DATA_DIR and TFDS's default may be new: TFDS creates them."""
  root = digits_builder.data_root(data_dir)
  if data_dir and '://' not in root and not os.path.isdir(root):
    raise DataError(f'data_dir {root} does not exist: pass --config.data_dir= an existing TFDS '
                    'data dir (or leave it empty for $TFDS_DATA_DIR).')
  return root


def _arrayrecord_files(dataset: str, split: str) -> list[str]:
  pattern = os.path.expanduser(dataset[len('arrayrecord:'):]).replace('{split}', split)
  return sorted(glob.glob(pattern))


def tokenizer_file(dataset: str, data_dir: str | None = None) -> str | None:
  """The SentencePiece model stored with a dataset (`tokenizer.model` beside its files)."""
  if dataset.startswith('arrayrecord:'):
    files = _arrayrecord_files(dataset, '*')
    folder = os.path.dirname(files[0]) if files else None
  else:
    folder = _tfds_builder(dataset, read_root(data_dir)).data_dir
  path = os.path.join(folder, 'tokenizer.model') if folder else None
  return path if path and os.path.isfile(path) else None


def first_split(dataset: str, data_dir: str | None = None) -> str:
  """'train' when the dataset has it, else its first split."""
  if dataset.startswith('arrayrecord:'):
    return 'train'
  splits = sorted(_tfds_builder(dataset, read_root(data_dir)).info.splits)
  return 'train' if 'train' in splits else splits[0]


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=64)
def _open(dataset: str, split: str, root: str, in_memory: float) -> Source:
  if dataset.startswith('arrayrecord:'):
    files = _arrayrecord_files(dataset, split)
    if not files:
      raise DataError(f'Dataset {dataset!r}: no files match it for split {split!r}; check the '
                      'glob (write {split} where the split name goes).')
    source = ArrayRecordSource(dataset, split, files)
  else:
    builder = _tfds_builder(dataset, root)
    if split not in builder.info.splits:
      raise DataError(f'Dataset {dataset!r} has no split {split!r}; its splits are '
                      f'{sorted(builder.info.splits)}.')
    source = TfdsSource(dataset, split, builder)
  return InMemorySource(source, decoded_mb=in_memory) if in_memory else source


def open_source(dataset: str, split: str, data_dir: str | None = None,
                cache_mb: float = 0.0) -> Source:
  """The `split` of `dataset`; held in memory when it is at most `cache_mb` MiB on disk, its
  images decoded when they fit `cache_mb` decoded (`InMemorySource`). Sources are shared within
  the process (several tasks reading one split read it once); a `data_dir` that does not
  exist is a DataError (`read_root`)."""
  root = read_root(data_dir)
  with _LOCK:
    source = _open(dataset, split, root, 0.0)
    if 0 < source.disk_bytes <= cache_mb * 2**20:
      source = _open(dataset, split, root, float(cache_mb))
  return source
