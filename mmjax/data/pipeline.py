"""The data pipeline's public API: train iterators, eval batches, dataset facts, the tokenizer.

Train iterators are grain `MapDataset` pipelines over global batch positions: position -> this
host's rows of the global batch (`order.py`: global per-epoch shuffle) -> `BatchBuilder` (read +
vectorised transforms, seeded per position by grain's `random_map`, drawn for the whole global
batch), read ahead by `config.data.threads` threads into a buffer of `config.data.prefetch`
batches (scaled per task by how often the AGD sampler draws it), in `config.data.workers` worker
processes when set (grain's `mp_prefetch`: batches do not depend on the worker count). Every
global batch is a pure function of (seed, task name, position), whatever the number of hosts, so
grain's iterator state (the next position) resumes exactly on any count. A corrupt example is
replaced and counted (`skipped_examples`, `batching.py`).
Config keys read: see `options.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
import zlib

import grain
import numpy as np
from absl import flags

from mmjax.data import features as features_lib
from mmjax.data import reinforced, sources
from mmjax.data.batching import CORRUPT, SKIPPED, BatchBuilder, limit_blas_threads
from mmjax.data.errors import DataError
from mmjax.data.options import DataOptions, config_get
from mmjax.core.tasks import Resolution, Task
from mmjax.data.order import GlobalOrder, HostRng
from mmjax.data import tokenizer as tokenizer_lib
from mmjax.data.tokenizer import Tokenizer
from mmjax.data.clip_tokenizer import ClipTokenizer
from mmjax.data.siglip_tokenizer import TOKENIZER_FILE as SIGLIP_FILE, SiglipTokenizer


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str, lowercase: bool) -> Tokenizer:
  if path.endswith('.json'):   # CLIP's byte-level BPE of an imported model
    return ClipTokenizer(path)
  if os.path.basename(path) == SIGLIP_FILE:
    return SiglipTokenizer(path)
  return Tokenizer(path, lowercase)


def load_tokenizer(config, dataset: str | None = None) -> Tokenizer:
  """The one tokenizer of a run: `config.text.tokenizer`, else the SentencePiece model stored
  with the first dataset (tasks in name order, then `dataset`) that has one; no dataset is built
  only to take its tokenizer.
  Without `config.text.tokenizer`, the text tasks' datasets must all ship the same model (by
  content): datasets converted with different tokenizers are refused in one sentence."""
  options = DataOptions.from_config(config)
  if options.tokenizer:
    return _tokenizer(options.tokenizer, options.lowercase)
  tasks = config_get(config, 'tasks', None) or {}
  names = [str(tasks[k].dataset) for k in sorted(tasks.keys())]
  _check_one_tokenizer(tasks, options)
  names += [dataset] if dataset else []
  names = list(dict.fromkeys(names))
  if not names:   # nothing to take one from: no dataset is built just for its tokenizer
    raise DataError("config.text.tokenizer is '' and the config names no dataset to take the "
                    'SentencePiece model (tokenizer.model) from; set config.text.tokenizer to a '
                    '.model file.')
  for name in names:
    path = sources.tokenizer_file(name, options.data_dir)
    if path:
      return _tokenizer(path, options.lowercase)
  raise DataError(f"config.text.tokenizer is '' but none of the datasets {names} ships a "
                  'SentencePiece model (tokenizer.model); set config.text.tokenizer to a .model '
                  'file.')


@functools.lru_cache(maxsize=64)
def _model_hash(path: str, mtime_ns: int) -> str:
  return tokenizer_lib.file_hash(path)


def _check_one_tokenizer(tasks, options: DataOptions) -> None:
  """Raises DataError when the datasets of the text tasks ship different tokenizer.model files."""
  found = {}  # sha256 -> (task, dataset, file)
  for key in sorted(tasks.keys()):
    if 'text' not in str(tasks[key].get('modalities', '')):
      continue
    try:
      path = sources.tokenizer_file(str(tasks[key].dataset), options.data_dir)
    except DataError:
      continue  # an unknown dataset: validate_task names it
    if path:
      found.setdefault(_model_hash(path, os.stat(path).st_mtime_ns),
                       (key, str(tasks[key].dataset), path))
  if len(found) > 1:
    (a, da, fa), (b, db, fb) = list(found.values())[:2]
    raise DataError(f'Tasks {a!r} and {b!r} read datasets {da!r} and {db!r}, which were converted '
                    f'with different tokenizers ({fa} and {fb}); a run tokenises all text with '
                    'one: set config.text.tokenizer to the .model file to use for all of them '
                    '(captions are stored as text and tokenised as they are read).')


def _plan(task: Task, config, cache: bool, label: str | None = None):
  """(options, source, feature mapping, tokenizer) of a task, all validated. A task without a
  name is an evaluation; `label` overrides whether a label is 'required', 'optional' or 'no'."""
  who = f'Task {task.name!r}' if task.name else f'Evaluation of {task.dataset!r}'
  where = f'config.tasks.{task.name}' if task.name else 'its config.evaluation.datasets entry'
  options = DataOptions.from_config(config)
  if task.batch_size <= 0:
    raise DataError(f'{who} has batch_size {task.batch_size}; set a positive one.')
  source = sources.open_source(task.dataset, task.split, options.data_dir,
                               options.cache_mb if cache else 0.0)
  bad = [m for m in task.classify if m not in task.modalities]
  if bad:
    raise DataError(f'{who} classifies {bad[0]!r}, which is not among its modalities '
                    f'{list(task.modalities)}.')
  label = label or ('required' if task.classify else 'no')
  if task.text_instances < 1:
    raise DataError(f'{who} has text_instances={task.text_instances}; set it to 1 or more.')
  mapping = features_lib.resolve(task.modalities, task.feature_map, source.features,
                                 dataset=task.dataset, who=who, label=label,
                                 text_instances=task.text_instances if 'text' in task.modalities
                                 else 1)
  if task.classify and task.num_classes:
    names = source.features[mapping['label']].class_names
    if names and len(names) != task.num_classes:
      raise DataError(f'{who} has num_classes={task.num_classes} but dataset {task.dataset!r} '
                      f'has {len(names)} classes; set num_classes={len(names)}.')
  for res in task.resolutions:
    features_lib.check_resolution(task.modalities, res, who, where)
  if task.reinforced:
    reinforced.check_features(source.features, task.modalities, task.dataset, who,
                              task.teacher_dim)
  tokenizer = load_tokenizer(config, task.dataset) if 'text' in task.modalities else None
  vocab = config_get(config, 'model.vocab_size', None)
  if tokenizer is not None and vocab is not None and tokenizer.vocab_size > int(vocab):
    raise DataError(f'{who}: the tokenizer {tokenizer.model_file} has {tokenizer.vocab_size} '
                    f'pieces but config.model.vocab_size is {vocab}; set it to at least '
                    f'{tokenizer.vocab_size}.')
  return options, source, mapping, tokenizer


def validate_task(task: Task, config) -> None:
  """Raises DataError (one sentence) when the task cannot be fed; reads no examples."""
  _plan(task, config, cache=False)


def _seeds(seed: int, key: str) -> list[int]:
  state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode())])
  return [int(s) for s in state.generate_state(2)]


class TrainIterator:
  """Infinite iterator of this host's rows of each global batch, with exact, JSON-serializable
  resume state that is the same on every host (it holds no host fields)."""

  def __init__(self, iterator, meta: dict, batch_size: int):
    self._it, self.meta, self.batch_size = iterator, meta, batch_size

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._it)

  def get_state(self) -> dict:
    return {**self.meta, 'grain': self._it.get_state()}

  def set_state(self, state: dict) -> None:
    for key, value in self.meta.items():
      if state.get(key) != value:
        raise DataError(f'Data iterator state is for {key}={state.get(key)!r}, not {value!r}: '
                        'restore it into an iterator made with the same task, seed and '
                        'batch size.')
    self._it.set_state(state['grain'])

  def close(self) -> None:
    self._it.close()


def _worker_init(worker_index: int, worker_count: int) -> None:
  del worker_index, worker_count
  limit_blas_threads()


def skipped_examples(batch: dict) -> int:
  """Removes and returns how many corrupt examples a train batch replaced (0 when none; for a
  MixedTask's `{member: batch}`, summed over members)."""
  total = int(batch.pop(SKIPPED, 0))
  for value in batch.values():
    if isinstance(value, dict):
      total += int(value.pop(SKIPPED, 0))
  return total


def _host_rows(builder, global_batch: int, rows: slice, indices, rng):
  """This host's rows of a global batch, augmented with draws made for the whole global batch."""
  return builder(indices, HostRng(rng, global_batch, rows))


def make_train_iterator(task: Task, config, *, seed: int, process_index: int = 0,
                        process_count: int = 1, prefetch_scale: float = 1.0) -> TrainIterator:
  """Shuffled, repeating, deterministic batches at `task.resolution`: this host's rows
  `[process_index * b, (process_index + 1) * b)` of each global batch of `task.batch_size`
  examples, `b = task.batch_size // process_count`. The examples and their augmentation depend
  on `seed` and the task's name only (not on its place in the config, nor on the host count).
  The read-ahead buffer holds `config.data.prefetch * prefetch_scale` batches (at least 1): the
  loop passes the task's share of steps relative to an even share."""
  resolution = task.resolution
  options, source, mapping, tokenizer = _plan(task, config, cache=True)
  if task.batch_size % process_count:
    raise DataError(f'Task {task.name!r}: batch_size {task.batch_size} is not divisible by '
                    f'the {process_count} processes.')
  limit_blas_threads()
  builder = BatchBuilder(source, mapping, resolution, options, tokenizer,
                         text_instances=task.text_instances, reinforced=task.reinforced)
  order_seed, map_seed = _seeds(seed, task.signature_name)
  order = GlobalOrder(len(source), task.batch_size, order_seed, process_index, process_count)

  build = functools.partial(_host_rows, builder, task.batch_size, order.rows)  # picklable
  ds = grain.MapDataset.range(sys.maxsize).map(order).random_map(build, seed=map_seed)
  prefetch = max(1, math.ceil(options.prefetch * prefetch_scale)) if options.prefetch else 0
  read = grain.ReadOptions(num_threads=options.threads, prefetch_buffer_size=prefetch)
  ds = ds.to_iter_dataset(read)
  if options.workers:
    if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags (defaults here)
      flags.FLAGS.mark_as_parsed()
    per_worker = max(1, math.ceil(prefetch / options.workers))
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=options.workers,
                                                     per_worker_buffer_size=per_worker),
                        worker_init_fn=_worker_init)
  iterator = ds.__iter__()
  if hasattr(iterator, 'start_prefetch'):
    iterator.start_prefetch()
  meta = {'task': task.signature_name, 'dataset': task.dataset, 'split': task.split,
          'seed': int(seed), 'global_batch': int(task.batch_size), 'num_examples': len(source)}
  return TrainIterator(iterator, meta, order.per_host)


class EvalBatches:
  """All examples of a split in fixed order, `batch_size` (global) per batch; this host gets its
  `batch_size // process_count` slice of each. Adds `valid` (bool) and `index` (int32, -1 on
  padding); every host yields `len(self)` batches."""

  def __init__(self, builder: BatchBuilder, num_examples: int, batch_size: int,
               process_index: int, process_count: int, options: DataOptions):
    self._builder, self.num_examples = builder, num_examples
    self.batch_size, self._options = batch_size, options
    self._per_host = batch_size // process_count
    self._offset = process_index * self._per_host

  def __len__(self) -> int:
    return math.ceil(self.num_examples / self.batch_size)

  def _batch(self, i: int) -> dict[str, np.ndarray]:
    index = i * self.batch_size + self._offset + np.arange(self._per_host)
    valid = index < self.num_examples
    batch = self._builder(np.where(valid, index, 0), None)
    batch['valid'] = valid & ~batch.pop(CORRUPT, np.zeros_like(valid))
    batch['index'] = np.where(valid, index, -1).astype(np.int32)
    return batch

  def __iter__(self):
    read = grain.ReadOptions(num_threads=self._options.threads,
                             prefetch_buffer_size=self._options.prefetch)
    return iter(grain.MapDataset.range(len(self)).map(self._batch).to_iter_dataset(read))


def make_eval_batches(dataset: str, split: str, modalities, resolution: Resolution, config, *,
                      batch_size: int, num_clips: int = 1, process_index: int = 0,
                      process_count: int = 1, feature_map=()) -> EvalBatches:
  """Eval batches over every example of `dataset`/`split` (see `EvalBatches`); `label` is
  included when the dataset has one."""
  task = Task(name='', dataset=dataset, split=split, modalities=tuple(modalities),
              batch_size=batch_size, resolutions=(resolution,), feature_map=tuple(feature_map))
  options, source, mapping, tokenizer = _plan(task, config, cache=True, label='optional')
  if batch_size % process_count or num_clips < 1:
    raise DataError(f'Evaluation of {dataset!r}: batch_size {batch_size} must be divisible by '
                    f'the {process_count} processes and num_clips ({num_clips}) >= 1.')
  limit_blas_threads()
  builder = BatchBuilder(source, mapping, resolution, options, tokenizer, num_clips)
  return EvalBatches(builder, len(source), batch_size, process_index, process_count, options)


@dataclasses.dataclass(frozen=True)
class DatasetSummary:
  name: str
  class_names: list[str]            # for zero-shot prompts; [] when the dataset has no labels
  features: dict[str, str]          # flattened feature name -> 'kind [shape] dtype'
  modalities: tuple[str, ...]       # what it feeds without a feature map (incl. 'label')
  splits: dict[str, int]            # split -> number of examples
  tokenizer_file: str | None        # its SentencePiece model, if it ships one


def dataset_info(dataset: str, config, split: str | None = None,
                 feature_map=()) -> DatasetSummary:
  """Facts about a dataset without reading its examples (opens `split`, else its first); the
  class names are those of the feature `feature_map` maps to 'label', else the default one."""
  options = DataOptions.from_config(config)
  source = sources.open_source(dataset, split or sources.first_split(dataset, options.data_dir),
                               options.data_dir)
  label = features_lib.resolve((), tuple(feature_map), source.features, dataset=dataset,
                               who=f'Dataset {dataset!r}').get('label')
  names = list(source.features[label].class_names) if label else []
  return DatasetSummary(dataset, names, {k: v.describe() for k, v in source.features.items()},
                        features_lib.available_modalities(source.features), dict(source.splits),
                        source.tokenizer_path)


def measure_throughput(iterator, num_batches: int = 20, warmup: int = 2) -> dict:
  """Times `num_batches` batches after `warmup`; for tools/bench_data.py."""
  for _ in range(warmup):
    next(iterator)
  start = time.perf_counter()
  examples = 0
  for _ in range(num_batches):
    batch = next(iterator)
    examples += len(next(iter(batch.values())))
  seconds = time.perf_counter() - start
  return {'batches': num_batches, 'seconds': seconds, 'batches_per_s': num_batches / seconds,
          'examples_per_s': examples / seconds}
