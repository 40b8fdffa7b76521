"""The example tables `tools/convert_data.py` reads besides WebDataset and CSV (`inputs.py`) and
COCO/Karpathy captions (`captions.py`): Parquet, Hugging Face `datasets` saved with
`save_to_disk`, JSON/JSONL annotations (LLaVA-style) and folders of images.

Each becomes rows (`dict` column -> value) for `examples.from_row`: the media column
holds a path (absolute, relative to the image root, or `gs://...`), the encoded bytes, or
`{'bytes': ..., 'path': ...}` (a Hugging Face Image); captions are one text or a list.
Parquet and Arrow tables are not loaded whole: a unit of work is one Parquet row group or one
slice of an Arrow file (`Slice`), read by the worker that converts it.

  parquet   `--input` one or more .parquet files (braces/globs); img2dataset's and DataComp's
            metadata (paths or URLs already downloaded beside them) or tables with image bytes
  hf        `--input` a `save_to_disk` folder (a Dataset, or a DatasetDict: `--split` picks its
            folder); its Arrow files are read with pyarrow, `datasets` is not needed;
            ClassLabel names come from its `dataset_info.json`
  jsonl     one JSON object a line (`.jsonl`), or a JSON list (`.json`, LLaVA's annotation
            files): the media under `image` (or `--path_column`), captions under `caption`,
            `captions`, `text` (or `--caption_column`), else the first answer of LLaVA's
            `conversations` (the `gpt` turn)
  folder    `--input` a folder of images: class sub-folders become labels (when every image
            lies in one), a `.txt` beside an image (same stem) its caption
"""

from __future__ import annotations

import dataclasses
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
from etils import epath

from mmjax.data.convert import examples as convert_examples

FOLDER_EXTENSIONS = tuple(f'.{e}' for e in convert_examples.EXTENSIONS['image']) + (
    '.gif', '.tif', '.tiff')


class SourceError(ValueError):
  """An input that cannot be read as the format named, in one sentence."""


@dataclasses.dataclass(frozen=True)
class Slice:
  """Rows `[start, stop)` of an Arrow file, or row group `start` of a Parquet file."""
  path: str
  fmt: str        # 'parquet' | 'arrow'
  start: int
  stop: int


def _arrow_table(path: str) -> pa.Table:
  """An Arrow IPC file as `datasets` writes it (the streaming format), or the file format."""
  source = pa.memory_map(path)
  try:
    return pa.ipc.open_stream(source).read_all()
  except pa.ArrowInvalid:
    return pa.ipc.open_file(pa.memory_map(path)).read_all()


def slice_rows(unit: Slice) -> list[dict]:
  """The rows of one unit, as Python values (bytes stay bytes)."""
  if unit.fmt == 'parquet':
    with epath.Path(unit.path).open('rb') as f:
      return pq.ParquetFile(f).read_row_group(unit.start).to_pylist()
  return _arrow_table(unit.path).slice(unit.start, unit.stop - unit.start).to_pylist()


def rows_of(unit) -> list[dict]:
  """The rows of a unit: a tuple of rows already read, or a `Slice`."""
  return slice_rows(unit) if isinstance(unit, Slice) else list(unit)


@dataclasses.dataclass
class Table:
  """What a converter job needs from a source: its units, column names, where relative paths
  start, and label names when the source defines them (else None)."""
  units: tuple
  columns: list[str]
  root: str
  label_names: tuple[str, ...] | None = None
  label_values: list | None = None   # every label value, to name the classes when not defined


def _label_column(columns, label_column: str, read) -> list | None:
  return read(label_column) if label_column in columns else None


def parquet(files: list[str], label_column: str) -> Table:
  units, columns, labels = [], None, []
  for path in files:
    with epath.Path(path).open('rb') as f:
      pf = pq.ParquetFile(f)
      names = pf.schema_arrow.names
      columns = columns or names
      if names != columns:
        raise SourceError(f'{path} has columns {names}, not {columns} like {files[0]}; convert '
                          'files of one table together.')
      units += [Slice(path, 'parquet', g, g + 1) for g in range(pf.num_row_groups)]
      if label_column in names:
        labels += pf.read(columns=[label_column]).column(0).to_pylist()
  root = os.path.dirname(files[0]) if '://' not in files[0] else str(epath.Path(files[0]).parent)
  return Table(tuple(units), list(columns or []), root,
               label_values=labels if label_column in (columns or []) else None)


def _hf_folder(folder: str, split: str) -> str:
  """The folder of one `save_to_disk` Dataset: `folder`, or its `split` of a DatasetDict."""
  if os.path.isfile(os.path.join(folder, 'dataset_dict.json')):
    with open(os.path.join(folder, 'dataset_dict.json')) as f:
      splits = json.load(f).get('splits', [])
    if split not in splits:
      raise SourceError(f'{folder} is a DatasetDict with splits {splits}, not {split!r}; pick one '
                        'with --split.')
    return os.path.join(folder, split)
  return folder


def hf_saved(folder: str, split: str, label_column: str, rows_per_unit: int) -> Table:
  folder = _hf_folder(folder, split)
  state_file = os.path.join(folder, 'state.json')
  if not os.path.isfile(state_file):
    raise SourceError(f'{folder} has no state.json: give the folder Dataset.save_to_disk (or '
                      'DatasetDict.save_to_disk) wrote.')
  with open(state_file) as f:
    files = [os.path.join(folder, d['filename']) for d in json.load(f)['_data_files']]
  features = {}
  if os.path.isfile(os.path.join(folder, 'dataset_info.json')):
    with open(os.path.join(folder, 'dataset_info.json')) as f:
      features = json.load(f).get('features') or {}
  units, columns = [], None
  for path in files:
    table = _arrow_table(path)
    columns = columns or table.schema.names
    units += [Slice(path, 'arrow', i, min(i + rows_per_unit, table.num_rows))
              for i in range(0, table.num_rows, rows_per_unit)]
  names = None
  spec = features.get(label_column) if isinstance(features, dict) else None
  if isinstance(spec, dict) and spec.get('_type') == 'ClassLabel' and spec.get('names'):
    names = tuple(str(n) for n in spec['names'])
  return Table(tuple(units), list(columns or []), folder, label_names=names)


def _llava_caption(conversations) -> list[str]:
  """The first answer of a LLaVA conversation (its `gpt` turn): the caption in the pretraining
  annotations, where the human turn only asks for one."""
  for turn in conversations or ():
    if isinstance(turn, dict) and turn.get('from') in ('gpt', 'assistant'):
      return [str(turn.get('value', ''))]
  return []


def jsonl(path: str, path_column: str, caption_column: str) -> tuple[list[dict], str, str]:
  """(rows, path column, caption column) of a JSONL or JSON-list annotation file."""
  with epath.Path(path).open('rb') as f:
    data = f.read().decode('utf-8-sig')
  try:
    if data.lstrip().startswith('['):
      items = json.loads(data)
    else:
      items = [json.loads(line) for line in data.splitlines() if line.strip()]
  except ValueError as e:
    raise SourceError(f'{path} is not JSON Lines or a JSON list ({e}); give one object per '
                      'line, or one list of objects.') from None
  items = [i for i in items if isinstance(i, dict)]
  path_column = path_column or next((c for c in ('image', 'path', 'file', 'filepath')
                                     if any(c in i for i in items)), 'image')
  if not caption_column:
    caption_column = next((c for c in ('captions', 'caption', 'text') if any(c in i for i in
                                                                           items)), '')
  rows = []
  for item in items:
    row = dict(item)
    if not caption_column and 'conversations' in item:
      row['captions'] = _llava_caption(item['conversations'])
    rows.append({k: v for k, v in row.items() if k != 'conversations'})
  return rows, path_column, caption_column or 'captions'


def folder_rows(folder: str) -> tuple[list[dict], bool]:
  """(rows with `path`, `captions` and maybe `label`, whether labels come from sub-folders)."""
  images = []
  for base, dirs, files in os.walk(folder):
    dirs.sort()
    images += [os.path.join(base, f) for f in sorted(files)
               if f.lower().endswith(FOLDER_EXTENSIONS)]
  rel = [os.path.relpath(p, folder) for p in images]
  labelled = bool(rel) and all(os.sep in r for r in rel)
  rows = []
  for path, r in zip(images, rel):
    side = os.path.splitext(path)[0] + '.txt'
    caption = ''
    if os.path.isfile(side):
      with open(side, encoding='utf-8', errors='replace') as f:
        caption = f.read().strip()
    row = {'path': path, 'captions': [caption] if caption else [], 'key': r}
    if labelled:
      row['label'] = r.split(os.sep)[0]
    rows.append(row)
  return rows, labelled
