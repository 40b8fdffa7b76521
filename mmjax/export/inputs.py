"""What an export is checked on: static input sizes and one fixed batch.

Sizes (image side, video frames, audio samples, text length) come from the config's first
`evaluation.datasets` entry (by name, as the evaluation orders them), then from the tasks. The
parity batch is the first `rows` examples of that entry's dataset and split
(`make_eval_batches`, deterministic eval preprocessing); when the dataset cannot be opened, or
lacks a modality the model has, those inputs are a seeded synthetic batch instead.
"""

from __future__ import annotations

import numpy as np

from mmjax.core import modalities as modalities_lib
from mmjax.core.tasks import Resolution
from mmjax.data import pipeline
from mmjax.export.errors import ExportError
from mmjax.config.defaults import setting

SIZE_KEYS = {m.name: m.fields for m in modalities_lib.all_records()}  # core/modalities.py


def eval_entry(config):
  """(name, entry) of the first evaluation dataset, or (None, None) when there is none."""
  datasets = setting(setting(config, 'evaluation'), 'evaluation.datasets')
  if not datasets:
    return None, None
  name = sorted(datasets.keys())[0]
  return name, datasets[name]


def _first(value):
  return value[0] if isinstance(value, (tuple, list)) else value


def input_sizes(config, modalities) -> dict[str, int]:
  """`{image_size, num_frames, audio_samples, text_length}` needed by `modalities`."""
  _, entry = eval_entry(config)
  sources = ([entry] if entry is not None else []) + [config.tasks[k] for k in sorted(config.tasks)]
  sizes = {}
  for m in modalities:
    for key in SIZE_KEYS[m]:
      found = [_first(s.get(key, None)) for s in sources if _first(s.get(key, None))]
      if not found:
        raise ExportError(f'the config sets no {key} (needed for the {m} input): set '
                          'it in the first config.evaluation.datasets entry.')
      sizes[key] = int(found[0])
  return sizes


def input_specs(modality: str, sizes: dict, batch) -> dict[str, tuple[tuple, np.dtype]]:
  """`{input name: (shape, dtype)}` of one modality with leading dimension `batch`."""
  return {name: ((batch,) + shape, np.dtype(dtype)) for name, (shape, dtype) in
          modalities_lib.array_specs(modality, sizes, export=True).items()}


def synthetic_inputs(modality: str, sizes: dict, rows: int, vocab_size: int,
                     seed: int = 0) -> dict[str, np.ndarray]:
  """Seeded inputs in the model's ranges: pixels in [-1, 1], waveforms ~ N(0, 0.1^2), token
  ids in [2, vocab) with a real-token prefix of 3..length (the rest 0-padded), other float
  inputs ~ N(0, 0.5^2) with their masks all ones."""
  rng = np.random.default_rng([seed, modalities_lib.names().index(modality)])
  out = {}
  for name, (shape, dtype) in input_specs(modality, sizes, rows).items():
    if name == 'text':
      ids = rng.integers(2, vocab_size, shape)
      lengths = rng.integers(min(3, shape[1]), shape[1] + 1, shape[0])
      mask = np.arange(shape[1])[None] < lengths[:, None]
      out['text'], out['text_mask'] = (ids * mask).astype(dtype), mask.astype(dtype)
    elif name == 'audio':
      out[name] = (0.1 * rng.standard_normal(shape)).astype(dtype)
    elif name in ('image', 'video'):
      out[name] = rng.uniform(-1.0, 1.0, shape).astype(dtype)
    elif name.endswith('_mask'):
      out[name] = np.ones(shape, dtype)
    else:
      out[name] = (0.5 * rng.standard_normal(shape)).astype(dtype)
  return out


def _dataset_batch(config, entry, modalities, sizes, rows):
  """The first `rows` valid examples of the entry's split for the modalities it has."""
  info = pipeline.dataset_info(entry.dataset, config, entry.split)
  have = tuple(m for m in modalities if m in info.modalities)
  res = Resolution(**{f: sizes.get(f) for f, _ in modalities_lib.resolution_fields()})
  batches = pipeline.make_eval_batches(
      entry.dataset, entry.split, have, res, config, batch_size=rows,
      feature_map=tuple(dict(setting(entry, 'evaluation.datasets.*.feature_map') or {}).items()))
  batch = next(iter(batches))
  keep = np.asarray(batch.pop('valid'), bool)
  batch.pop('index')
  batch = {k: np.asarray(v)[keep] for k, v in batch.items()}
  # The loader sends uint8 pixels and int16 audio; the exported signature takes them normalised
  # (float32, as the embeddings make them), so its callers need not know the loader's encoding.
  for key in (m.name for m in modalities_lib.all_records() if m.input.dtype == 'uint8'):
    if key in batch and batch[key].dtype == np.uint8:
      batch[key] = batch[key].astype(np.float32) * np.float32(2 / 255) - np.float32(1)
  for key in (m.name for m in modalities_lib.all_records() if m.input.dtype == 'int16'):
    if key in batch and batch[key].dtype == np.int16:
      batch[key] = batch[key].astype(np.float32) / np.float32(32768)
  return batch, info


def parity_batch(config, modalities, sizes: dict, rows: int):
  """-> (batch dict of numpy arrays, description dict, dataset info or None)."""
  _, entry = eval_entry(config)
  batch, info, reason = {}, None, None
  if entry is None:
    reason = 'the config has no evaluation.datasets entry'
  else:
    try:
      batch, info = _dataset_batch(config, entry, modalities, sizes, rows)
    except Exception as e:  # noqa: BLE001 - any failure to read data falls back, and is reported
      reason = f'{entry.dataset} could not be read ({type(e).__name__}: {str(e)[:200]})'
  n = len(next(iter(batch.values()))) if batch else rows
  synthetic = [m for m in modalities if m not in batch]
  for m in synthetic:
    batch.update(synthetic_inputs(m, sizes, n, int(config.model.vocab_size), int(config.seed)))
  desc = {'rows': int(n), 'synthetic_modalities': synthetic,
          'source': 'synthetic' if info is None else (
              f'{entry.dataset}/{entry.split}' + (' + synthetic' if synthetic else ''))}
  if reason:
    desc['fallback_reason'] = reason
  return batch, desc, info
