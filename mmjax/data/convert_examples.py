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

from mmjax.data import convert_media, tfds_compat

tfds_compat.patch_media_features()

EXTENSIONS = {'image': ('jpg', 'jpeg', 'png', 'webp', 'bmp'),
              'video': ('mp4', 'avi', 'webm', 'mkv', 'mov', 'm4v'),
              'audio': ('wav', 'flac', 'ogg', 'mp3')}


@dataclasses.dataclass(frozen=True)
class ExampleOptions:
  modality: str = 'image'          # image | video | audio
  fps: float = 8.0                 # video frames kept per second
  frame_size: int = 256            # video frames' short side
  max_frames: int = 0              # 0 = every kept frame
  sample_rate: int = 16000         # audio rate (the model's config.model.audio.sample_rate)
  max_seconds: float = 0.0         # 0 = whole clip
  label_names: tuple[str, ...] = ()
  exif_orientation: bool = True    # images: a JPEG with an EXIF rotation is stored upright


def features(options: ExampleOptions):
  f = tfds.features
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


def media_value(data, options: ExampleOptions):
  """The stored form of one media item (bytes or a path); raises MediaError."""
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
    media = media_value(members[ext], options)
  except convert_media.MediaError as e:
    return None, str(e)
  return {options.modality: media, 'captions': captions, 'key': key}, ''


def table_captions(raw: str) -> list[str]:
  """A table cell -> captions: a JSON list, or one text; stripped, empty and repeated dropped."""
  try:
    captions = json.loads(raw) if raw.strip().startswith('[') else [raw]
  except ValueError:
    captions = [raw]
  if not isinstance(captions, list):
    captions = [raw]
  return list(dict.fromkeys(str(c).strip() for c in captions if str(c).strip()))


def from_row(row: dict[str, str], root: str, path_column: str, options: ExampleOptions,
             caption_column: str = '', label_column: str = 'label'
             ) -> tuple[dict | None, str]:
  """(example, '') or (None, reason) for one table row: media at `row[path_column]` (absolute,
  or relative to `root`), captions from `caption_column` (default `captions`, then `caption`;
  a JSON list or one text; none is an empty list), the label from `label_column`."""
  path = os.path.join(root, row[path_column]) if root else row[path_column]
  columns = [caption_column] if caption_column else ['captions', 'caption']
  raw = next((row[c] for c in columns if row.get(c)), '')
  example = {'captions': table_captions(raw), 'key': row.get('key') or row[path_column]}
  if options.label_names:
    example['label'] = row[label_column]
  if not row[path_column].strip():
    return None, 'empty path'
  if not os.path.isfile(path):
    return None, f'missing file {path}'
  try:
    example[options.modality] = media_value(path, options)
  except (convert_media.MediaError, OSError) as e:
    return None, str(e)
  return example, ''
