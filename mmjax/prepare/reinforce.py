"""MobileCLIP dataset reinforcement: run teacher exports over a dataset, store what they saw.

  report = reinforce_dataset(['runs/demo/export'], 'mmjax_digits', 'runs/reinforced')

For each example of each split, K random-resized crops are drawn (`augmentations`), every teacher
embeds each crop (at its own input size) and the example's text (its first caption, with its own
tokenizer); the embeddings are averaged over the ensemble and L2-normalised. The copy
`OUTPUT/<dataset>_reinforced/1.0.0/` holds all original features plus those of
`mmjax/data/reinforced.py`, the dataset's tokenizer and `reinforce_report.json`; train on it with
`--config.data_dir=OUTPUT`. Everything is checked before anything is written, and the copy is
written beside its final place and renamed into it only when complete.
"""

from __future__ import annotations

import os
import shutil
import zlib

import numpy as np

from mmjax.core.exports.params_io import ExportError
from mmjax.data import features as features_lib, reinforced as R, sources
from mmjax.prepare import reinforce_writer as writer_lib
from mmjax.data.errors import DataError
from mmjax.prepare.teacher import Teacher


class ReinforceError(DataError):
  """Bad reinforcement input: one sentence naming the fix."""


def _l2(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _first_texts(column) -> list[str]:
  return [v[0] if isinstance(v, (list, tuple, np.ndarray)) and len(v) else
          (v if isinstance(v, str) else '') for v in column]


def _check_teachers(teachers: list[Teacher], available) -> tuple[str, ...]:
  dims = {t.embed_dim for t in teachers}
  if len(dims) != 1:
    raise ReinforceError(f'the teachers embed into different sizes {sorted(dims)}; an ensemble '
                         'is averaged, so pass exports with one embed_dim.')
  mods = tuple(m for m in R.MODALITIES if m in available
               and all(m in t.modalities for t in teachers))
  if 'image' not in mods:
    raise ReinforceError('the teachers and the dataset share no image modality, which '
                         'reinforcement stores crops of: pass teachers trained on images.')
  if 'text' in mods and any(t.tokenizer is None for t in teachers):
    raise ReinforceError('a teacher export has no tokenizer.model to encode text with: export '
                         'it from a run whose dataset ships one.')
  return mods


def _chunk(source, idx, mapping, mods, teachers, rng, k, crop_scale, flip, extra):
  """The records of examples `idx`: stored bytes + crops, flips and teacher embeddings."""
  cols = source.read(idx, [mapping[m] for m in mods])
  column, bad = cols[mapping['image']], np.zeros(len(idx), bool)
  hs, ws = R.image_sizes(column, bad)
  crops, flips = R.draw_augmentations(rng, hs, ws, k, crop_scale, flip)
  values = {R.CROP: crops, R.FLIP: flips}
  reps, rep_bad = np.repeat(column, k, axis=0), np.zeros(len(idx) * k, bool)
  image = []
  for t in teachers:
    pixels = R.crop_images(reps, crops.reshape(-1, 4), t.sizes['image_size'],
                           flips.reshape(-1).astype(bool), rep_bad)
    image.append(t.embed('image', {'image': pixels}))
  if bad.any() or rep_bad.any():
    first = int(idx[np.flatnonzero(bad | rep_bad.reshape(-1, k).any(1))[0]])
    raise ReinforceError(f'example {first} of {source.name!r}/{source.split} cannot be '
                         'decoded: repair or drop it before reinforcing.')
  values[R.teacher_key('image')] = _l2(np.mean(image, 0)).reshape(len(idx), k, -1)
  if 'text' in mods:
    texts = _first_texts(cols[mapping['text']])
    emb = _l2(np.mean([t.embed_texts(texts) for t in teachers], 0))
    values[R.teacher_key('text')] = emb[:, None]
  return list(writer_lib.records(source.serialized(idx), extra, values))


def reinforce_dataset(teachers: list[str], dataset: str, output: str, *, splits=('train',),
                      augmentations: int = 4, crop_scale=(0.7, 1.0), flip: bool = False,
                      seed: int = 0, chunk: int = 256, data_dir: str | None = None,
                      name: str | None = None, progress=None) -> dict:
  """Writes the reinforced copy (see module docstring); returns its report. Raises
  ReinforceError / DataError / ExportError on bad input, before writing anything."""
  if not teachers:
    raise ReinforceError('no --teacher given: pass one or more exports, comma-separated.')
  if augmentations < 1:
    raise ReinforceError(f'--augmentations must be >= 1, got {augmentations}.')
  name = name or dataset.split(':')[0].replace('/', '_') + '_reinforced'
  final = os.path.join(output, name)
  if os.path.exists(final):
    raise ReinforceError(f'{final} already exists: choose another --output (or remove it).')
  missing = [p for p in teachers if not os.path.exists(p)]
  if missing:
    raise ExportError(f'--teacher {missing[0]!r} does not exist: pass the --output of python '
                      '-m mmjax.export for a trained run.')
  srcs = {s: sources.open_source(dataset, s, data_dir) for s in splits}
  first = srcs[splits[0]]
  if not hasattr(first, 'serialized'):
    raise ReinforceError(f'{dataset!r} is not a prepared TFDS dataset, which reinforcement '
                         'copies: convert it first (python -m tools.convert_data).')
  mapping = features_lib.resolve(('image',) + (('text',) if any(
      s.kind == 'text' for s in first.features.values()) else ()), (), first.features,
      dataset=dataset, who=f'Dataset {dataset!r}', label='no')
  models = [Teacher(p) for p in teachers]
  mods = _check_teachers(models, mapping)
  dims = {m: models[0].embed_dim for m in mods}
  extra = writer_lib.extra_features(augmentations, dims)
  features = writer_lib.combined_features(first.tfds_features, extra)
  os.makedirs(output, exist_ok=True)
  tmp = os.path.join(output, f'.{name}.incomplete')
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    w = writer_lib.SplitWriter(os.path.join(tmp, writer_lib.VERSION), name)
    for split, source in srcs.items():
      rng = np.random.default_rng([int(seed), zlib.crc32(split.encode())])
      starts = range(0, len(source), chunk)
      w.write(split, (_chunk(source, np.arange(s, min(s + chunk, len(source))), mapping, mods,
                             models, rng, augmentations, crop_scale, flip, extra)
                      for s in (progress(starts, split) if progress else starts)))
    report = {'dataset': dataset, 'name': name, 'teachers': [os.path.abspath(p) for p in teachers],
              'teacher_temperatures': [t.temperature for t in models], 'modalities': list(mods),
              'augmentations': augmentations, 'crop_scale': list(crop_scale), 'flip': flip,
              'seed': seed, 'embed_dim': models[0].embed_dim, 'splits': {
                  s: n[0] for s, n in w.lengths.items()}}
    w.finish(features, f'{dataset} reinforced with {len(models)} teacher(s).',
             first.tokenizer_path, report)
    os.replace(tmp, final)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return report
