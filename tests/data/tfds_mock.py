"""Prepared TFDS datasets on disk with the real datasets' feature specs and fake examples, as
`tfds build` leaves them (TFRecord by default, or ArrayRecord), made without TF or downloads.

Examples come from `tfds.testing`'s random fake generator (what `tfds.testing.mock_data` serves),
with one length for every ragged axis (its sequences must agree); media then get realistic random
sizes (images 40-72 px, videos 6-12 frames, 1 s of audio) and images/frames are JPEG/PNG-encoded
with PIL (TFDS's own encoder needs TF); TFDS's feature connectors serialize. Several of these
builders cannot be constructed without TF, so their specs are written out here, copied from the
TFDS sources.
"""

from __future__ import annotations

import io
import os

import numpy as np
import tensorflow_datasets as tfds

from PIL import Image
from tensorflow_datasets.testing import mocking

from mmjax.data import tfds_compat, tfds_writer

tfds_compat.patch_media_features()

F = tfds.features


def _ucf101_labels() -> str:
  return os.path.join(os.path.dirname(tfds.__file__), 'video', 'ucf101_labels.txt')


def spec(name: str):
  """(folder under the data dir, version, FeaturesDict) of a real dataset."""
  if name == 'imagenette':
    return 'imagenette/full-size-v2', '1.0.0', F.FeaturesDict({
        'image': F.Image(), 'label': F.ClassLabel(num_classes=10)})
  if name == 'coco_captions':
    return 'coco_captions/2014', '1.1.0', F.FeaturesDict({
        'image': F.Image(encoding_format='jpeg'), 'image/filename': F.Text(),
        'image/id': np.int64,
        'objects': F.Sequence({'id': np.int64, 'area': np.int64, 'bbox': F.BBoxFeature(),
                               'label': F.ClassLabel(num_classes=80), 'is_crowd': np.bool_}),
        'captions': F.Sequence({'text': np.str_, 'id': np.int64})})
  if name == 'ucf101':
    return 'ucf101/ucf101_1', '2.0.0', F.FeaturesDict({
        'video': F.Video((None, None, None, 3), encoding_format='jpeg'),
        'label': F.ClassLabel(names_file=_ucf101_labels())})
  if name == 'speech_commands':
    words = ['down', 'go', 'left', 'no', 'off', 'on', 'right', 'stop', 'up', 'yes',
             '_silence_', '_unknown_']
    return 'speech_commands', '0.0.3', F.FeaturesDict({
        'audio': F.Audio(sample_rate=16000, dtype=np.int16),
        'label': F.ClassLabel(names=words)})
  raise ValueError(name)


def _encode(array: np.ndarray, fmt: str | None) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(array, np.uint8)).save(buffer, 'JPEG' if fmt == 'jpeg' else 'PNG')
  return buffer.getvalue()


def _encode_media(features, example: dict, rng: np.random.Generator) -> dict:
  out = {}
  h, w = rng.integers(40, 73, 2)
  for key, feature in features.items():
    value = example[key]
    if isinstance(feature, F.Video):
      frames = rng.integers(0, 256, (rng.integers(6, 13), h, w, 3))
      out[key] = [_encode(frame, feature.feature.encoding_format) for frame in frames]
    elif isinstance(feature, F.Image):
      out[key] = _encode(rng.integers(0, 256, (h, w, 3)), feature.encoding_format)
    elif isinstance(feature, F.Audio):
      out[key] = rng.integers(-3000, 3000, 16000).astype(np.int16)
    elif isinstance(feature, F.Sequence) and 'bbox' in getattr(feature.feature, 'keys',
                                                              lambda: ())():
      box = np.asarray(value['bbox']).reshape(-1, 2, 2)   # (ymin, xmin), (ymax, xmax)
      out[key] = {**value, 'bbox': np.sort(box, axis=1).reshape(-1, 4).astype(np.float32)}
    else:
      out[key] = value
  return out


def _truncate_images(features, example: dict) -> dict:
  """The example with its encoded image cut to half its bytes (a damaged download)."""
  return {k: v[:len(v) // 2] if isinstance(features[k], F.Image) else v
          for k, v in example.items()}


def prepare(root: str, name: str, splits: dict[str, int], file_format: str = 'tfrecord',
            seed: int = 0, truncated: dict[str, tuple[int, ...]] | None = None) -> str:
  """Writes `name` under `root` with `splits` {split: examples}, the images of examples
  `truncated[split]` cut short; returns the dataset's name as tasks give it (with config)."""
  folder_name, version, features = spec(name)
  folder = os.path.join(root, folder_name, version)
  os.makedirs(folder, exist_ok=True)
  lengths = {}
  for i, (split, count) in enumerate(splits.items()):
    fake = mocking.RandomFakeGenerator(features, count, seed=seed + 1000 * i,
                                       constant_dynamic_shape=True)
    rng = np.random.default_rng(seed + 1000 * i)
    examples = [_encode_media(features, ex, rng) for ex in fake]
    for j in (truncated or {}).get(split, ()):
      examples[j] = _truncate_images(features, examples[j])
    records = [features.serialize_example(ex) for ex in examples]
    half = (len(records) + 1) // 2          # two shards: reads cross a shard boundary
    shards = [records[:half], records[half:]]
    for s, shard in enumerate(shards):
      path = tfds_writer.shard_path(folder, name, split, s, len(shards), file_format)
      tfds_writer.write_shard(path, shard, file_format)
    lengths[split] = [len(s) for s in shards]
  tfds_writer.write_metadata(folder, name, version, features, lengths, file_format)
  return folder_name
