"""Caption annotation files -> table rows for `tools/convert_data.py`, so COCO and Flickr30k
retrieval is reachable offline from the files users already have (TFDS's `coco_captions` builder
needs TensorFlow, and Flickr30k is not in TFDS).

  coco      COCO captions JSON (`captions_val2014.json`, `captions_train2017.json`, or a
            Karpathy-split file in that layout such as CLIP_benchmark's `coco_test_karpathy.json`):
            `images` [{id, file_name}] and `annotations` [{image_id, caption}]; one row per image,
            images by id, captions in annotation order; paths relative to `--image_root`
  karpathy  Karpathy's split JSON (`dataset_flickr30k.json`, `dataset_coco.json`,
            `dataset_flickr8k.json`): `images` [{filename, filepath?, split, sentences [{raw}]}];
            the rows of one split, in file order; path `image_root/filepath/filename`

Each row is `{'image': path, 'captions': [...], 'key': ...}`, every caption of the image kept,
a caption repeated within one image too (retrieval scores every caption, as CLIP_benchmark does).
"""

from __future__ import annotations

import json
import os

from etils import epath

from mmjax.data.convert.sources import SourceError

# Output split -> the Karpathy `split` values it takes (`train` is Karpathy's train + restval,
# the 113k COCO training images of the usual setup).
KARPATHY_SPLITS = {'train': ('train', 'restval'), 'validation': ('val',), 'val': ('val',),
                   'test': ('test',), 'restval': ('restval',)}


def _load(path: str, what: str) -> dict:
  try:
    with epath.Path(path).open('rb') as f:
      data = json.loads(f.read().decode('utf-8-sig'))
  except ValueError as e:
    raise SourceError(f'{path} is not JSON ({e}); give the {what} file.') from None
  if not isinstance(data, dict) or not isinstance(data.get('images'), list):
    raise SourceError(f'{path} has no "images" list; give the {what} file.')
  return data


def _texts(captions) -> list[str]:
  return [str(c).strip() for c in captions if c is not None and str(c).strip()]


def coco_rows(path: str) -> list[dict]:
  """One row per image of a COCO captions JSON, images by id, captions in annotation order."""
  data = _load(path, 'COCO captions JSON (images + annotations)')
  if not isinstance(data.get('annotations'), list) or not all(
      'caption' in a and 'image_id' in a for a in data['annotations'][:1]):
    raise SourceError(f'{path} has no "annotations" list of {{image_id, caption}}; give a COCO '
                      'captions file (captions_*.json), not instances or keypoints.')
  captions: dict = {}
  for a in data['annotations']:
    captions.setdefault(a['image_id'], []).append(a['caption'])
  images = sorted(data['images'], key=lambda i: i['id'])
  return [{'image': i['file_name'], 'captions': _texts(captions.get(i['id'], [])),
           'key': str(i['id'])} for i in images]


def karpathy_rows(path: str, split: str) -> list[dict]:
  """The rows of `split` (train, validation/val, test, restval) of a Karpathy split JSON."""
  if split not in KARPATHY_SPLITS:
    raise SourceError(f'--split={split} is not a Karpathy split: use one of '
                      f'{", ".join(KARPATHY_SPLITS)}.')
  data = _load(path, 'Karpathy split JSON (dataset_flickr30k.json, dataset_coco.json)')
  if data['images'] and 'sentences' not in data['images'][0]:
    raise SourceError(f'{path}: its images have no "sentences"; give a Karpathy split file '
                      '(dataset_flickr30k.json, dataset_coco.json).')
  wanted = KARPATHY_SPLITS[split]
  rows = []
  for i in data['images']:
    if i.get('split') not in wanted:
      continue
    rel = os.path.join(i.get('filepath', ''), i['filename'])
    key = i.get('cocoid', i.get('imgid', i['filename']))
    rows.append({'image': rel, 'key': str(key),
                 'captions': _texts(s.get('raw') for s in i['sentences'])})
  if not rows:
    found = sorted({str(i.get('split')) for i in data['images']})
    raise SourceError(f'{path} holds no image of Karpathy split {"/".join(wanted)} (its splits: '
                      f'{", ".join(found)}); choose another --split.')
  return rows
