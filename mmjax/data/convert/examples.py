"""One input example (WebDataset members or a CSV row) -> a converted example, or why not.

A converted dataset has `key` (text), `captions` (a list of texts), the media of its modality —
`image` (the encoded bytes as given, checked to decode), `video` (JPEG frames at the chosen fps
and size) or `audio` (int16 at the chosen rate) — and `label` when the table has one.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from mmjax.core import modalities
from mmjax.data import tfds_compat
from mmjax.data.convert import media as convert_media

tfds_compat.patch_media_features()

EXTENSIONS = {'image': ('jpg', 'jpeg', 'png', 'webp', 'bmp'),
              'video': ('mp4', 'avi', 'webm', 'mkv', 'mov', 'm4v'),
              'audio': ('wav', 'flac', 'ogg', 'mp3')}
# Array modalities (point clouds, time series, ...): the files the modality table names; each
# becomes a float32 `[n, columns]` Tensor feature of the modality's name.
EXTENSIONS.update({m.name: m.file_formats for m in modalities.all_records()
                   if m.file_formats and m.name not in EXTENSIONS})


def array_columns(modality: str, options: 'ExampleOptions') -> int:
  """Columns per row of an array modality: fixed by its table entry (point clouds: 3) or
  `options.columns` (time series: the channels, from the first file or --channels)."""
  last = modalities.get(modality).input.shape[-1]
  return last if isinstance(last, int) else int(options.columns)


@dataclasses.dataclass(frozen=True)
class ExampleOptions:
  modality: str = 'image'          # image | video | audio | an array modality (EXTENSIONS)
  fps: float = 8.0                 # video frames kept per second
  frame_size: int = 256            # video frames' short side
  max_frames: int = 0              # 0 = every kept frame
  sample_rate: int = 16000         # audio rate (the model's config.model.audio.sample_rate)
  max_seconds: float = 0.0         # 0 = whole clip
  label_names: tuple[str, ...] = ()
  exif_orientation: bool = True    # images: a JPEG with an EXIF rotation is stored upright
  label_is_index: bool = False     # labels are indices into label_names (a HF ClassLabel)
  columns: int = 0                 # array modalities without a fixed width: values per row
  every_caption: bool = False      # keep a caption repeated within an example (retrieval sets)


def features(options: ExampleOptions):
  f = tfds.features
  if options.modality not in ('image', 'video', 'audio'):  # an array modality
    spec = {options.modality: f.Tensor(shape=(None, array_columns(options.modality, options)),
                                       dtype=np.float32, encoding='zlib'),
            'captions': f.Sequence(f.Text()), 'key': f.Text()}
    if options.label_names:
      spec['label'] = f.ClassLabel(names=list(options.label_names))
    return f.FeaturesDict(spec)
  media = {'image': lambda: f.Image(),
           'video': lambda: f.Video((None, None, None, 3), encoding_format='jpeg'),
           'audio': lambda: f.Audio(shape=(None,), dtype=np.int16,
                                    sample_rate=options.sample_rate)}[options.modality]()
  spec = {options.modality: media, 'captions': f.Sequence(f.Text()), 'key': f.Text()}
  if options.label_names:
    spec['label'] = f.ClassLabel(names=list(options.label_names))
  return f.FeaturesDict(spec)


def captions_from(members: dict[str, bytes]) -> list[str]:
  """Captions from `txt` and from a `captions` list or `caption` string in `json`, in that
  order, stripped, empty and repeated ones dropped."""
  found = []
  if 'txt' in members:
    found.append(members['txt'].decode('utf-8', 'replace'))
  if 'json' in members:
    try:
      meta = json.loads(members['json'])
    except ValueError:
      meta = {}
    if isinstance(meta, dict):
      value = meta.get('captions', meta.get('caption'))
      found += value if isinstance(value, list) else [value] if value is not None else []
  return list(dict.fromkeys(str(c).strip() for c in found if str(c).strip()))


def media_value(data, options: ExampleOptions, ext: str = ''):
  """The stored form of one media item (bytes or a path; `ext` its extension when bytes);
  raises MediaError."""
  if options.modality not in ('image', 'video', 'audio'):
    ext = ext or os.path.splitext(str(data))[1]
    return convert_media.array_rows(data, ext, array_columns(options.modality, options))
  if options.modality == 'image':
    if not isinstance(data, bytes):
      with open(data, 'rb') as f:
        data = f.read()
    convert_media.check_image(data)
    return convert_media.upright(data) if options.exif_orientation else data
  if options.modality == 'video':
    return convert_media.video_frames(data, options.fps, options.frame_size, options.max_frames)
  return convert_media.audio_int16(data, options.sample_rate, options.max_seconds)


def from_members(key: str, members: dict[str, bytes],
                 options: ExampleOptions) -> tuple[dict | None, str]:
  """(example, '') or (None, reason) for one WebDataset example."""
  ext = next((e for e in EXTENSIONS[options.modality] if e in members), None)
  if ext is None:
    return None, f'no {options.modality} file ({"/".join(EXTENSIONS[options.modality])})'
  captions = captions_from(members)
  if not captions:
    return None, 'no caption (.txt, or captions/caption in .json)'
  try:
    media = media_value(members[ext], options, ext)
  except convert_media.MediaError as e:
    return None, str(e)
  return {options.modality: media, 'captions': captions, 'key': key}, ''


def table_captions(raw, keep_repeats: bool = False) -> list[str]:
  """A table cell -> captions: a list, a JSON list, or one text; stripped, empty ones dropped,
  and repeated ones unless `keep_repeats`."""
  if raw is None:
    return []
  if isinstance(raw, (list, tuple)):
    captions = list(raw)
  else:
    raw = str(raw)
    try:
      captions = json.loads(raw) if raw.strip().startswith('[') else [raw]
    except ValueError:
      captions = [raw]
    if not isinstance(captions, list):
      captions = [raw]
  texts = [str(c).strip() for c in captions if c is not None and str(c).strip()]
  return texts if keep_repeats else list(dict.fromkeys(texts))


def _read_media(value, root: str):
  """(bytes or a local path, name for the key and messages) of a media cell: a path (absolute,
  relative to `root`, or on an object store, `gs://...`), bytes, or `{'bytes', 'path'}`."""
  if isinstance(value, dict):
    if value.get('bytes'):
      return bytes(value['bytes']), str(value.get('path') or '')
    value = value.get('path') or ''
  if isinstance(value, (bytes, bytearray, memoryview)):
    return bytes(value), ''
  value = str(value or '').strip()
  if not value:
    return None, ''
  full = value if ('://' in value or not root) else (
      root.rstrip('/') + '/' + value if '://' in root else os.path.join(root, value))
  if '://' in full:  # object stores, through the path layer (etils epath)
    return epath.Path(full).read_bytes(), value
  return full, value


def from_row(row: dict, root: str, path_column: str, options: ExampleOptions,
             caption_column: str = '', label_column: str = 'label', key: str = ''
             ) -> tuple[dict | None, str]:
  """(example, '') or (None, reason) for one table row: media from `row[path_column]` (a path:
  absolute, relative to `root`, or `gs://`; or the encoded bytes), captions from
  `caption_column` (default `captions`, then `caption`; a list, a JSON list or one text; none is
  an empty list), the label from `label_column`."""
  columns = [caption_column] if caption_column else ['captions', 'caption']
  raw = next((row[c] for c in columns if row.get(c) not in (None, '', [])), None)
  cell = row.get(path_column)
  name = cell.get('path') if isinstance(cell, dict) else (cell if isinstance(cell, str) else '')
  example = {'captions': table_captions(raw, options.every_caption), 'key': str(row.get('key') or name or key)}
  if options.label_names:
    label = row.get(label_column)
    example['label'] = int(label) if options.label_is_index else str(label)
  try:
    media, name = _read_media(cell, root)
  except (OSError, ValueError) as e:
    return None, f'cannot read {cell}: {e}'
  if media is None:
    return None, 'empty path'
  if isinstance(media, str) and not os.path.isfile(media):
    return None, f'missing file {media}'
  try:
    example[options.modality] = media_value(media, options, os.path.splitext(name)[1])
  except (convert_media.MediaError, OSError) as e:
    return None, str(e)
  return example, ''
