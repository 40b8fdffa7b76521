"""`--save_features`: the embeddings an evaluation scored, so anyone can recompute any metric.

`OUT/features/<name>_<split>.npz` (`<name>` the report's dataset key, `/` and `:` as `_`) holds
  <modality>           [n, dim]    L2-normalised common-space embeddings (zero-shot, retrieval)
  <modality>_features  [n, width]  pooled encoder features (few-shot, linear probe)
  label                [n]         class index, where the split has labels
  text                 [m, dim]    every caption's embedding, dataset order (retrieval splits)
  text_item            [m]         the item (row of <modality>) each caption belongs to
The probes' training split is saved the same way (`<name>_<probe split>.npz`). Rows are in
dataset order, several clips already averaged as in the report.
"""

from __future__ import annotations

import os
import re

import numpy as np

FOLDER = 'features'


def path(features_dir: str, name: str, split: str) -> str:
  stem = re.sub(r'[^A-Za-z0-9_.-]+', '_', f'{name}_{split}')
  return os.path.join(features_dir, f'{stem}.npz')


def save(features_dir: str, name: str, split: str, data: dict, modalities, *, text=None,
         text_item=None) -> str:
  """Writes the arrays of `data` (`Embedder.collect`'s output) atomically; returns the path."""
  arrays = {}
  for m in modalities:
    arrays[m] = np.asarray(data[m]['embed'], np.float32)
    arrays[f'{m}_features'] = np.asarray(data[m]['features'], np.float32)
  if 'label' in data:
    arrays['label'] = np.asarray(data['label'], np.int64)
  if text is not None:
    arrays['text'] = np.asarray(text, np.float32)
    arrays['text_item'] = np.asarray(text_item, np.int64)
  out = path(features_dir, name, split)
  os.makedirs(features_dir, exist_ok=True)
  tmp = out[:-len('.npz')] + '.tmp.npz'
  np.savez(tmp, **arrays)
  os.replace(tmp, out)
  return out


def relative(file: str) -> str:
  """How the report names a saved file: relative to the report directory."""
  return os.path.join(FOLDER, os.path.basename(file))


def load(file: str) -> dict[str, np.ndarray]:
  with np.load(file) as f:
    return {k: f[k] for k in f.files}
