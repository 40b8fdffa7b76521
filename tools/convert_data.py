"""Converts image-text shards, tables of media files, video and audio into a dataset mmjax names.

  python -m tools.convert_data webdataset --input='DIR/shard-{00000..00099}.tar' \\
      --output=DATA_DIR --name=my_pairs
  python -m tools.convert_data csv --input=pairs.csv --image_root=DIR --output=DATA_DIR \\
      --name=my_pairs [--split=validation]
  python -m tools.convert_data csv --input=train.csv --path_column=filepath \\
      --caption_column=title --output=DATA_DIR --name=photos      # open_clip's table
  python -m tools.convert_data csv --modality=video --input=clips.csv --image_root=DIR \\
      --output=DATA_DIR --name=my_clips --fps=8 --frame_size=256
  python -m tools.convert_data webdataset --modality=audio --input='sounds-{0..9}.tar' \\
      --output=DATA_DIR --name=my_sounds --sample_rate=16000
  python -m tools.convert_data parquet --input='DIR/{00000..00009}.parquet' --path_column=jpg \\
      --caption_column=txt --output=DATA_DIR --name=laion_part      # paths, URLs or bytes
  python -m tools.convert_data hf --input=SAVED_DIR --split=train --path_column=image \\
      --caption_column=text --output=DATA_DIR --name=my_hf          # Dataset.save_to_disk
  python -m tools.convert_data jsonl --input=llava_pretrain.json --image_root=DIR \\
      --output=DATA_DIR --name=llava_pairs          # JSON Lines, or LLaVA's JSON list
  python -m tools.convert_data folder --input=DIR --output=DATA_DIR --name=my_photos
      # class sub-folders -> labels, NAME.txt beside NAME.jpg -> its caption
  python -m tools.convert_data karpathy --input=dataset_flickr30k.json \\
      --image_root=flickr30k-images --split=test --output=DATA_DIR --name=flickr30k
  python -m tools.convert_data coco --input=annotations/captions_val2017.json \\
      --image_root=val2017 --split=test --output=DATA_DIR --name=mscoco_captions
      # retrieval benchmarks offline, every caption kept (mmjax/data/convert/captions.py)
  python -m tools.convert_data csv --modality=point_cloud --input=shapes.csv \\
      --output=DATA_DIR --name=my_shapes   # .npy/.ply/.csv point files: [n, 2 or 3] rows

Writes `DATA_DIR/NAME/1.0.0/` (a TFDS dataset of ArrayRecord shards, one per input tar or per
`--rows_per_shard` table rows) with `tokenizer.model` and `conversion_report.json` (examples
written; skipped ones with their keys and reasons: a zero-byte file, a truncated or damaged
image, a file that is not an image, a codec the loader cannot read, a missing file, no caption).
The first split converted trains SentencePiece on its captions (or copies `--tokenizer`); the
dataset's tokenizer.model is never replaced, so another split converted later reuses it (a
different `--tokenizer` is refused). Train on it with `--config.data_dir=DATA_DIR
--config.tasks.TASK.dataset=NAME`. Interrupted? Run the same command again: finished shards are
kept (other inputs or options are refused). A conversion that writes no example is an error.

The output may be on an object store too (`--output=gs://bucket/data`): each worker writes its
shard locally and uploads it whole (the way Beam workers on Dataflow, which share no disk, write
one dataset). Inputs may lie on an object store (`gs://...`): tar shards, tables, Parquet files
and media paths are read through etils' path layer. Tar shards may also come from a command,
WebDataset's `pipe:CMD` (`--input='pipe:curl -sfL https://host/shard-{0000..0099}.tar'`: the
tar is what CMD writes to stdout, one command per shard); a command that exits non-zero is
reported with its status and stderr in the conversion report (the examples it wrote before are
kept), and one whose program is not on PATH is refused before anything is written. Other
sources: see `mmjax/data/convert/sources.py`.

Tables: a header line; the separator (tab, comma, semicolon, pipe) is sniffed from it or given
(`--separator`); UTF-8 with or without a byte-order mark, or `--encoding`. Columns: the media
path (`--path_column`, default: the modality's name, else path, file, filename, filepath),
captions (`--caption_column`, default captions then caption; a JSON list or one text; an empty
one keeps the image with no caption), optionally a label (`--label_column`, default label) and
key. Paths are absolute, or relative to `--image_root` (default: the table's folder). A JPEG's
EXIF orientation is applied (stored upright) unless `--no-exif_orientation`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import sys

from etils import epath

from mmjax import paths
from mmjax.data.convert import captions as convert_captions
from mmjax.data.convert import examples as convert_examples
from mmjax.data.convert import inputs as convert_inputs
from mmjax.data.convert import media as convert_media
from mmjax.data.convert import run as convert_run
from mmjax.data.convert import sources as cs
from mmjax.data import tokenizer as tokenizer_lib


def _fail(message: str) -> int:
  print(f'error: {message}', file=sys.stderr)
  return 2


def _folder_of(path: str) -> str:
  """The folder holding `path` (a local path, or a gs:// URL): where its relative paths start."""
  return path.rsplit('/', 1)[0] if '://' in path else os.path.dirname(os.path.abspath(path))


def _table_job(args, options) -> tuple[convert_run.Job | None, str]:
  remote = '://' in args.input
  if not remote and not os.path.isfile(args.input):
    return None, f'--input={args.input} is not a file; give the CSV/TSV table of media paths.'
  if args.image_root and '://' not in args.image_root and not os.path.isdir(args.image_root):
    return None, f'--image_root={args.image_root} is not a directory; give the folder the ' \
                 "table's paths are relative to (or leave it out for absolute paths)."
  try:
    rows = convert_inputs.read_table(args.input, args.separator, args.encoding)
  except convert_inputs.TableError as e:
    return None, str(e)
  columns = list(rows[0]) if rows else []
  path_column = args.path_column or next(
      (c for c in (args.modality, 'path', 'file', 'filename', 'filepath') if c in columns), '')
  caption_columns = [args.caption_column] if args.caption_column else ['caption', 'captions']
  has_text = any(c in columns for c in caption_columns)
  if not rows or path_column not in columns or not (has_text or args.label_column in columns):
    named = [c for c in (args.path_column, args.caption_column) if c and c not in columns]
    return None, (f'{args.input} has no column {named[0]!r} (its header: {columns}); name its '
                  'columns with --path_column and --caption_column.' if named and rows else
                  f'{args.input} needs a header with a media path column (--path_column; '
                  f'tried {args.modality}, path, file, filename, filepath) and a caption '
                  f'(--caption_column) or label (--label_column) column; it has '
                  f'{columns or "no rows"}.')
  if args.label_column in columns:
    options = dataclasses.replace(options, label_names=tuple(
        sorted({r[args.label_column] for r in rows})))
  root = args.image_root or _folder_of(args.input)
  if args.modality not in ('image', 'video', 'audio') and not convert_examples.array_columns(
      args.modality, options):  # the width of every row: the first file's
    first = os.path.join(root, rows[0][path_column])
    try:
      width = convert_media.read_array(first, os.path.splitext(first)[1]).shape[1]
    except (convert_media.MediaError, OSError) as e:
      return None, (f'the first {args.modality} file {first} cannot be read ({e}); fix it or '
                    'give the values per step with --channels.')
    options = dataclasses.replace(options, columns=int(width))
  n = args.rows_per_shard
  units = tuple(tuple(rows[i:i + n]) for i in range(0, len(rows), n))
  return convert_run.Job('csv', units, '', args.name, args.split, options, root=root,
                         path_column=path_column, caption_column=args.caption_column,
                         label_column=args.label_column), ''


def _rows_job(args, options, rows: list[dict] | tuple, columns: list[str], root: str,
              path_column: str, caption_column: str, label_names=None, label_values=None,
              units=None) -> tuple[convert_run.Job | None, str]:
  """A table job from rows already read (or `units` of a Parquet/Arrow source)."""
  if path_column not in columns:
    return None, (f'{args.input} has no media column {path_column!r} (its columns: {columns}); '
                  'name it with --path_column.')
  if args.caption_column and args.caption_column not in columns:
    return None, (f'{args.input} has no column {args.caption_column!r} (its columns: '
                  f'{columns}); name the caption column with --caption_column.')
  if label_names is None and args.label_column in columns:
    values = label_values if label_values is not None else [r.get(args.label_column)
                                                           for r in rows]
    label_names = tuple(str(v) for v in sorted(set(values), key=lambda v: (
        not isinstance(v, (int, float)), v if isinstance(v, (int, float)) else str(v))))
    options = dataclasses.replace(options, label_names=label_names)
  elif label_names:
    options = dataclasses.replace(options, label_names=tuple(label_names), label_is_index=True)
  if units is None:
    n = args.rows_per_shard
    units = tuple(tuple(rows[i:i + n]) for i in range(0, len(rows), n))
  if not units:
    return None, f'{args.input} holds no rows; give a table with at least one example.'
  return convert_run.Job('csv', tuple(units), '', args.name, args.split, options, root=root,
                         path_column=path_column, caption_column=caption_column,
                         label_column=args.label_column), ''


def _source_job(args, options) -> tuple[convert_run.Job | None, str]:
  """Jobs of the parquet, hf, jsonl and folder formats (`mmjax/data/convert/sources.py`)."""
  remote = '://' in args.input
  try:
    if args.format == 'parquet':
      files = convert_inputs.expand(args.input) if not remote else [args.input]
      missing = [f for f in files if not remote and not os.path.isfile(f)]
      if not files or missing:
        return None, f'--input={args.input} matches no Parquet file; check the path or glob.'
      table = cs.parquet(files, args.label_column)
      path_column = args.path_column or next((c for c in (args.modality, 'jpg', 'path', 'file',
                                                          'filepath') if c in table.columns), '')
      return _rows_job(args, options, (), table.columns, args.image_root or table.root,
                       path_column, args.caption_column or next(
                           (c for c in ('caption', 'captions', 'txt', 'text', 'title')
                            if c in table.columns), ''),
                       label_values=table.label_values, units=table.units)
    if args.format == 'hf':
      if not os.path.isdir(args.input):
        return None, f'--input={args.input} is not a folder; give what save_to_disk wrote.'
      table = cs.hf_saved(args.input, args.split, args.label_column, args.rows_per_shard)
      path_column = args.path_column or next((c for c in (args.modality, 'img', 'path')
                                              if c in table.columns), '')
      caption = args.caption_column or next((c for c in ('caption', 'captions', 'text', 'txt')
                                             if c in table.columns), '')
      labels = None if table.label_names else ([r.get(args.label_column) for u in table.units
                                                for r in cs.slice_rows(u)]
                                               if args.label_column in table.columns else None)
      return _rows_job(args, options, (), table.columns, args.image_root or table.root,
                       path_column, caption, label_names=table.label_names,
                       label_values=labels, units=table.units)
    if args.format in ('coco', 'karpathy'):   # caption annotations: retrieval benchmarks
      if not remote and not os.path.isfile(args.input):
        return None, f'--input={args.input} is not a file; give the {args.format} caption JSON.'
      if args.image_root and '://' not in args.image_root and not os.path.isdir(args.image_root):
        return None, f'--image_root={args.image_root} is not a directory; give the image folder.'
      if args.modality != 'image':
        return None, f'{args.format} annotations describe images: leave out --modality.'
      rows = (convert_captions.coco_rows(args.input) if args.format == 'coco' else
              convert_captions.karpathy_rows(args.input, args.split))
      root = args.image_root or _folder_of(args.input)
      return _rows_job(args, dataclasses.replace(options, every_caption=True), rows,
                       ['captions', 'image', 'key'], root, 'image', 'captions')
    if args.format == 'jsonl':
      if not remote and not os.path.isfile(args.input):
        return None, f'--input={args.input} is not a file; give the JSONL or JSON annotations.'
      rows, path_column, caption = cs.jsonl(args.input, args.path_column, args.caption_column)
      columns = sorted({k for r in rows for k in r} | {caption})
      root = args.image_root or _folder_of(args.input)
      return _rows_job(args, options, rows, columns, root, path_column, caption)
    if not os.path.isdir(args.input):
      return None, f'--input={args.input} is not a folder of images.'
    rows, _ = cs.folder_rows(args.input)
    if not rows:
      return None, (f'--input={args.input} holds no image ('
                    f'{", ".join(cs.FOLDER_EXTENSIONS)}); check the folder.')
    columns = sorted({k for r in rows for k in r})
    return _rows_job(args, options, rows, columns, '', 'path', 'captions')
  except (cs.SourceError, convert_inputs.TableError) as e:
    return None, str(e)
  except (OSError, ValueError) as e:  # pyarrow's errors are ValueErrors/OSErrors
    return None, f'--input={args.input} cannot be read as {args.format}: {e}'


def _tokenizer_conflict(folder: str, tokenizer: str) -> str:
  """Why `--tokenizer` cannot be used with the dataset in `folder` ('' when it can)."""
  existing = os.path.join(folder, tokenizer_lib.TOKENIZER_FILE)
  if not tokenizer or not paths.exists(existing):
    return ''
  if tokenizer_lib.file_hash(tokenizer) == hashlib.sha256(
      epath.Path(existing).read_bytes()).hexdigest():
    return ''
  return (f'{existing} already exists and differs from --tokenizer={tokenizer}; a dataset keeps '
          'one tokenizer for all its splits: leave out --tokenizer to reuse it, or convert into '
          'another --name.')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('format', choices=('webdataset', 'csv', 'parquet', 'hf', 'jsonl', 'folder',
                                         'coco', 'karpathy'))
  parser.add_argument('--input', required=True, help="tar shards ('a-{000..009}.tar', globs, "
                      "gs://..., 'pipe:CMD') or a .csv/.tsv table")
  parser.add_argument('--output', required=True, help='the data dir to write into (a folder, '
                      'or gs://... that every worker writes to)')
  parser.add_argument('--name', required=True, help='the dataset name tasks will use')
  parser.add_argument('--split', default='train')
  parser.add_argument('--modality', default='image', choices=tuple(convert_examples.EXTENSIONS),
                      help='point_cloud: .npy/.ply/.csv point files; time_series: .npy/.csv '
                      '[steps, channels] files')
  parser.add_argument('--channels', type=int, default=0, help='time_series: values per step '
                      '(default: those of the first file)')
  parser.add_argument('--image_root', default='', help='csv: folder of the media paths')
  parser.add_argument('--path_column', default='')
  parser.add_argument('--caption_column', default='', help="csv: default 'captions', then "
                      "'caption'")
  parser.add_argument('--label_column', default='label')
  parser.add_argument('--separator', default='', help=r"csv: default sniffed; e.g. '\t' or ';'")
  parser.add_argument('--encoding', default='', help='csv: default UTF-8 (BOM or not)')
  parser.add_argument('--exif_orientation', default=True, action=argparse.BooleanOptionalAction,
                      help='store JPEGs upright per their EXIF orientation (default on)')
  parser.add_argument('--rows_per_shard', type=int, default=2000)
  parser.add_argument('--fps', type=float, default=8.0)
  parser.add_argument('--frame_size', type=int, default=256, help="video frames' short side")
  parser.add_argument('--max_frames', type=int, default=0)
  parser.add_argument('--sample_rate', type=int, default=16000)
  parser.add_argument('--max_seconds', type=float, default=0.0)
  parser.add_argument('--tokenizer', default='', help='a SentencePiece .model to store instead '
                      'of training one on the captions')
  parser.add_argument('--vocab_size', type=int, default=8000)
  parser.add_argument('--workers', type=int, default=max(1, (os.cpu_count() or 2) - 1))
  parser.add_argument('--engine', default='pool', choices=('pool', 'beam'),
                      help='pool: this machine\'s processes; beam: an Apache Beam pipeline '
                      '(tools/convert_beam.py; pip install apache-beam)')
  parser.add_argument('--beam_args', default='', help="beam: pipeline options, e.g. "
                      "'--runner=DirectRunner --direct_num_workers=4'")
  args = parser.parse_args(argv)

  if not args.name.replace('_', '').isalnum() or not args.name[0].isalpha():
    return _fail(f'--name={args.name!r} must start with a letter and hold only letters, '
                 'digits and underscores (it becomes a TFDS dataset name).')
  if args.tokenizer and not os.path.isfile(args.tokenizer):
    return _fail(f'--tokenizer={args.tokenizer} is not a file; give a SentencePiece .model.')
  options = convert_examples.ExampleOptions(
      modality=args.modality, fps=args.fps, frame_size=args.frame_size,
      max_frames=args.max_frames, sample_rate=args.sample_rate, max_seconds=args.max_seconds,
      exif_orientation=args.exif_orientation, columns=max(0, args.channels))
  if args.format == 'webdataset':
    shards = convert_inputs.expand(args.input)
    if args.input.startswith(convert_inputs.PIPE):
      why = convert_inputs.missing_shard(shards[0])
      if why:
        return _fail(f'--input: {why}; a pipe: input is a shell command that writes one tar '
                     "to stdout, e.g. 'pipe:curl -sfL https://host/shard-{0000..0099}.tar'.")
    else:
      missing = [s for s in shards if convert_inputs.missing_shard(s)]
      if not shards or missing:
        return _fail(f'--input={args.input} matches no tar file' + (
            f' ({len(missing)} of {len(shards)} missing, first {missing[0]})' if missing
            else '') + '; check the path and the {first..last} range.')
    job = convert_run.Job('webdataset', tuple(shards), '', args.name, args.split, options)
  else:
    job, why = (_table_job if args.format == 'csv' else _source_job)(args, options)
    if job is None:
      return _fail(why)
  folder = os.path.join(args.output, args.name, convert_run.VERSION)
  previous = os.path.join(folder, '_convert', args.split, 'job.json')
  if paths.exists(previous):
    before = json.loads(paths.read_text(previous))
    now = convert_run.job_record(job)
    # ('inputs' is absent from a job.json written before inputs were fingerprinted)
    if any(k in before and before[k] != now[k] for k in ('shards', 'options', 'inputs')):
      return _fail(f'{folder} holds an earlier conversion of split {args.split!r} with other '
                   'inputs or options; use another --name or --split, or delete it.')
  conflict = _tokenizer_conflict(folder, args.tokenizer)
  if conflict:
    return _fail(conflict)
  job = dataclasses.replace(job, folder=folder)
  finish = dict(tokenizer=args.tokenizer, vocab_size=args.vocab_size,
                description=f'Converted by tools.convert_data from {args.input}.')
  if args.engine == 'beam':
    if importlib.util.find_spec('apache_beam') is None:
      return _fail("--engine=beam needs Apache Beam: pip install 'mmjax[beam]' (or "
                   'apache-beam), or use the default --engine=pool.')
    from tools import convert_beam
    report = convert_beam.run(job, args.beam_args, **finish)
  else:
    report = convert_run.run(job, workers=args.workers, **finish)
  if not report[args.split]['examples']:
    reasons = [f'{s["key"]}: {s["reason"]}' for s in report[args.split]['skipped_examples']]
    convert_run.remove_split(job)
    return _fail(f'no example of {args.input} could be converted ({len(reasons)} skipped'
                 + (f', e.g. {reasons[0]}' if reasons else '') + '); check --image_root and '
                 'the path and caption columns. Nothing was kept.')
  for split, r in report.items():
    print(f'{args.name}/{split}: {r["examples"]} examples, {r["skipped"]} skipped '
          f'(see {os.path.join(folder, convert_run.REPORT_FILE)})')
  for s in report[args.split]['skipped_examples'][:50]:
    print(f'  skipped {s["key"]}: {s["reason"]}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
