"""Runs a conversion: input units -> ArrayRecord shards of a TFDS dataset, in worker processes,
resumable by shard, then metadata, a SentencePiece model and a report.

Unit i (one WebDataset tar, or one chunk of table rows) becomes shard i of the split. A shard
is written under a temporary name and renamed, then its report (`_convert/SPLIT/shard-i.json`:
count, skipped keys with reasons) and captions; a rerun skips shards whose report exists. Once
every shard is done: `dataset_info.json`/`features.json` over all converted splits, the
tokenizer and `conversion_report.json`. The tokenizer is written once per dataset and never
replaced: the first converted split trains SentencePiece on its captions (or copies
`--tokenizer`); later splits reuse it, so a split converted later reads with the same ids.
`job.json` records the inputs' fingerprint, so a rerun with other inputs is refused instead of
keeping shards made from the old ones.

The dataset folder may be on an object store (`--output=gs://bucket/data`): every file goes
through the path layer (`mmjax/paths.py`), a worker writes its shard in a local temporary folder
and uploads it whole, then its captions and report, so workers that share no filesystem (Beam on
Dataflow) write one dataset. Object writes are atomic, so a shard present is a shard complete.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import multiprocessing
import os
import shutil
import tarfile
import tempfile
from typing import Callable

from etils import epath
from tqdm import tqdm

from mmjax import paths
from mmjax.data import tfds_writer
from mmjax.data.convert import examples as convert_examples
from mmjax.data.convert import inputs as convert_inputs
from mmjax.data.convert import sources as convert_sources
from mmjax.data import tokenizer as tokenizer_lib

VERSION = '1.0.0'
REPORT_FILE = 'conversion_report.json'


@dataclasses.dataclass(frozen=True)
class Job:
  """Everything a worker needs (picklable)."""
  kind: str                              # 'webdataset' | 'csv' (any table of rows)
  units: tuple                           # per unit: a tar path, a tuple of table rows, or a
                                         # convert_sources.Slice of a Parquet/Arrow file
  folder: str                            # DATA_DIR/NAME/VERSION
  name: str
  split: str
  options: convert_examples.ExampleOptions
  root: str = ''                         # csv: media paths are relative to it
  path_column: str = ''
  caption_column: str = ''               # csv: '' = captions, then caption
  label_column: str = 'label'


def fingerprint(job: Job) -> str:
  """A hash of what the job reads: its units (table rows; tar paths with their sizes), where
  media paths are resolved, and which columns it takes."""
  digest = hashlib.sha256()

  def plain(value):  # bytes (embedded images) enter the hash by their own hash
    return hashlib.sha256(bytes(value)).hexdigest() if isinstance(value, (bytes, bytearray)) \
        else str(value)

  for unit in job.units:
    if isinstance(unit, (str, convert_sources.Slice)):
      path = unit if isinstance(unit, str) else unit.path
      stat = os.stat(path) if os.path.isfile(path) else None
      where = unit if isinstance(unit, str) else dataclasses.astuple(unit)
      digest.update(json.dumps([where, stat.st_size if stat else -1,
                                stat.st_mtime_ns if stat else -1]).encode())
    else:
      digest.update(json.dumps(unit, sort_keys=True, ensure_ascii=False, default=plain).encode())
  digest.update(json.dumps([job.kind, job.root, job.path_column, job.caption_column,
                            job.label_column]).encode())
  return digest.hexdigest()


def job_record(job: Job) -> dict:
  """What `job.json` holds: a rerun must match it to keep the shards already written."""
  return {'shards': len(job.units), 'kind': job.kind,
          'options': json.loads(json.dumps(dataclasses.asdict(job.options))),
          'inputs': fingerprint(job)}


def work_dir(job: Job) -> str:
  return os.path.join(job.folder, '_convert', job.split)


def _glob(folder: str, pattern: str) -> list[str]:
  """Sorted paths under `folder` (local or an object store) matching `pattern`."""
  if paths.is_remote(folder):
    return sorted(str(p) for p in epath.Path(folder).glob(pattern))
  return sorted(glob.glob(os.path.join(folder, pattern)))


def _write(path: str, text: str) -> None:
  """Replaces `path` with `text` (UTF-8) whole: a local temporary name renamed, or one object."""
  if paths.is_remote(path):
    epath.Path(path).write_bytes(text.encode('utf-8'))
    return
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def _read_json(path: str):
  return json.loads(epath.Path(path).read_bytes())


def _put(local: str, target: str) -> None:
  """Copies the local file `local` to `target` (local or an object store), whole."""
  if paths.is_remote(target):
    epath.Path(local).copy(target, overwrite=True)
  else:
    shutil.copyfile(local, target + '.tmp')
    os.replace(target + '.tmp', target)


def _examples(job: Job, unit):
  """(key, example or None, reason) of one unit; a truncated tar ends with a reason."""
  if job.kind == 'webdataset':
    try:
      for key, members in convert_inputs.webdataset_examples(unit):
        example, why = convert_examples.from_members(key, members, job.options)
        yield key, example, why
    except convert_inputs.ShardError as e:     # a pipe: command that failed
      yield f'{convert_inputs.shard_name(unit)}:<end>', None, str(e)
    except (tarfile.TarError, OSError, EOFError) as e:
      yield f'{convert_inputs.shard_name(unit)}:<end>', None, f'tar shard ends early: {e}'
    return
  try:
    rows = convert_sources.rows_of(unit)
  except (OSError, ValueError) as e:
    yield f'{getattr(unit, "path", "")}:{getattr(unit, "start", "")}', None, f'unreadable: {e}'
    return
  for i, row in enumerate(rows):
    key = f'{os.path.basename(unit.path)}:{unit.start}:{i}' if isinstance(
        unit, convert_sources.Slice) else f'row {i}'
    example, why = convert_examples.from_row(row, job.root, job.path_column, job.options,
                                             job.caption_column, job.label_column, key)
    yield (example['key'] if example else _row_key(row, job.path_column, key)), example, why


def _row_key(row: dict, path_column: str, default: str) -> str:
  cell = row.get(path_column)
  name = cell.get('path') if isinstance(cell, dict) else cell if isinstance(cell, str) else ''
  return str(row.get('key') or name or default)


def convert_unit(args) -> dict:
  """Writes shard `index` of the job; returns (and saves) its report."""
  job, index = args
  features = convert_examples.features(job.options)
  report = {'shard': index, 'examples': 0, 'skipped': []}
  captions = []

  def records():
    for key, example, why in _examples(job, job.units[index]):
      if example is None:
        report['skipped'].append({'key': key, 'reason': why})
        continue
      captions.extend(example['captions'])
      yield features.serialize_example(example)

  path = tfds_writer.shard_path(job.folder, job.name, job.split, index, len(job.units))
  if paths.is_remote(path):          # written here, then uploaded whole
    with tempfile.TemporaryDirectory() as stage:
      local = os.path.join(stage, os.path.basename(path))
      report['examples'] = tfds_writer.write_shard(local, records())
      _put(local, path)
  else:
    report['examples'] = tfds_writer.write_shard(path, records())
  folder = work_dir(job)
  _write(os.path.join(folder, f'captions-{index:05d}.txt'),
         ''.join(c.replace('\n', ' ') + '\n' for c in captions))
  _write(os.path.join(folder, f'shard-{index:05d}.json'), json.dumps(report))  # last: done
  return report


def _done(job: Job) -> set[int]:
  return {int(os.path.basename(p)[6:11]) for p in _glob(work_dir(job), 'shard-*.json')}


def _all_splits(folder: str) -> dict[str, list[dict]]:
  out = {}
  for split_dir in _glob(folder, os.path.join('_convert', '*')):
    meta = _read_json(os.path.join(split_dir, 'job.json'))
    reports = [os.path.join(split_dir, f'shard-{i:05d}.json') for i in range(meta['shards'])]
    if set(reports) <= set(_glob(split_dir, 'shard-*.json')):
      out[os.path.basename(split_dir)] = [_read_json(r) for r in reports]
  return out


def _tokenizer(job: Job, tokenizer: str, vocab_size: int, max_sentences: int = 2_000_000):
  """Writes the dataset's tokenizer.model unless it has one (never replaced: another split's
  ids would change meaning); `tools/convert_data.py` refuses a --tokenizer that differs."""
  target = os.path.join(job.folder, tokenizer_lib.TOKENIZER_FILE)
  if paths.exists(target):
    return
  if tokenizer:
    _put(tokenizer, target)
    return
  sentences = []
  for path in _glob(job.folder, os.path.join('_convert', '*', 'captions-*.txt')):
    text = epath.Path(path).read_bytes().decode('utf-8')
    lines = text.replace('\r\n', '\n').replace('\r', '\n').split('\n')  # as text mode reads
    sentences += [line.lower() for line in lines if line.strip()]
    if len(sentences) >= max_sentences:
      break
  if sentences:
    with tempfile.TemporaryDirectory() as stage:
      local = os.path.join(stage, tokenizer_lib.TOKENIZER_FILE)
      tokenizer_lib.train_sentencepiece(sentences[:max_sentences], local, vocab_size)
      _put(local, target)


def _split_report(reports: list[dict]) -> dict:
  return {'examples': sum(r['examples'] for r in reports),
          'skipped': sum(len(r['skipped']) for r in reports),
          'skipped_examples': [k for r in reports for k in r['skipped']]}


def remove_split(job: Job) -> None:
  """Deletes what a conversion of `job.split` wrote (its shards and work files), and the
  dataset folder when nothing else is left in it."""
  if paths.is_remote(job.folder):   # an object store has no folders to leave behind
    for path in _glob(job.folder, f'{job.name}-{job.split}.*') + _glob(work_dir(job), '*'):
      epath.Path(path).unlink()
    return
  for path in glob.glob(os.path.join(job.folder, f'{job.name}-{job.split}.*')):
    os.remove(path)
  shutil.rmtree(work_dir(job), ignore_errors=True)
  left = [p for p in os.listdir(job.folder) if p != '_convert'] if os.path.isdir(
      job.folder) else []
  if os.path.isdir(job.folder) and not left and not os.listdir(os.path.join(job.folder,
                                                                           '_convert')):
    shutil.rmtree(job.folder)
    parent = os.path.dirname(job.folder)
    if os.path.isdir(parent) and not os.listdir(parent):
      os.rmdir(parent)


def start(job: Job) -> list[int]:
  """Records the job (`job.json`) and returns the units still to convert."""
  paths.makedirs(work_dir(job))
  _write(os.path.join(work_dir(job), 'job.json'), json.dumps(job_record(job)))
  return [i for i in range(len(job.units)) if i not in _done(job)]


def finish(job: Job, *, tokenizer: str = '', vocab_size: int = 8000,
           description: str = '') -> dict:
  """Once every unit is converted: metadata over all splits, the tokenizer (unless the dataset
  has one) and the report; returns the report (no metadata when the split has no example)."""
  splits = _all_splits(job.folder)
  if not sum(r['examples'] for r in splits.get(job.split, [])):
    return {job.split: _split_report(splits.get(job.split, []))}
  tfds_writer.write_metadata(job.folder, job.name, VERSION,
                             convert_examples.features(job.options),
                             {s: [r['examples'] for r in reps] for s, reps in splits.items()},
                             description=description)
  _tokenizer(job, tokenizer, vocab_size)
  report = {s: _split_report(reps) for s, reps in splits.items()}
  _write(os.path.join(job.folder, REPORT_FILE), json.dumps(report, indent=1))
  return report


def run(job: Job, *, workers: int = 1, tokenizer: str = '', vocab_size: int = 8000,
        description: str = '', progress: Callable | None = None) -> dict:
  """Converts every unit not yet done in a process pool, then `finish`; returns the report."""
  todo = start(job)
  bar = tqdm(total=len(job.units), initial=len(job.units) - len(todo), unit='shard',
             desc=f'{job.name}/{job.split}', disable=progress is False)
  if workers > 1 and len(todo) > 1:
    with multiprocessing.get_context('spawn').Pool(min(workers, len(todo))) as pool:
      for _ in pool.imap_unordered(convert_unit, [(job, i) for i in todo]):
        bar.update(1)
  else:
    for i in todo:
      convert_unit((job, i))
      bar.update(1)
  bar.close()
  return finish(job, tokenizer=tokenizer, vocab_size=vocab_size, description=description)
