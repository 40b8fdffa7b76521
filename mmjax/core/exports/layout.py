"""Where an export's files live, and how to recognise an export directory.

  OUT/export_report.json   manifest: step, dtype, formats, files, parity results
  OUT/config.json          the run's config (JSON, as training wrote it)
  OUT/README.md            the model card (model_card.py)
  OUT/tokenizer.model      the SentencePiece model text inputs were trained with
  OUT/orbax/               params-only orbax checkpoint: params/, config.json, meta.json
  OUT/model.safetensors    flat named parameters (see naming.py), config + step in metadata
  OUT/stablehlo/           <modality>.jax_exported (jax.export) + signature.json
"""

from __future__ import annotations

import json
import os

FORMATS = ('orbax', 'safetensors', 'stablehlo')
DTYPES = ('float32', 'bfloat16')
REPORT = 'export_report.json'
CONFIG = 'config.json'
MODEL_CARD = 'README.md'
TOKENIZER = 'tokenizer.model'
ORBAX_DIR = 'orbax'
ORBAX_PARAMS = 'params'
ORBAX_META = 'meta.json'
SAFETENSORS = 'model.safetensors'
STABLEHLO_DIR = 'stablehlo'
SIGNATURE = 'signature.json'


def stablehlo_file(modality: str) -> str:
  return f'{modality}.jax_exported'


def is_export(path: str) -> bool:
  """Whether `path` is an export directory written by `mmjax.export` (it has the manifest)."""
  return os.path.isfile(os.path.join(path, REPORT))


def orbax_dir(path: str) -> str | None:
  """The params-only orbax directory of an export root or of itself; None when absent."""
  for d in (os.path.join(path, ORBAX_DIR), path):
    if os.path.isfile(os.path.join(d, ORBAX_META)) and os.path.isdir(os.path.join(d, ORBAX_PARAMS)):
      return d
  return None


def safetensors_file(path: str) -> str | None:
  """The safetensors file `path` is, or holds at its root; None when absent."""
  if os.path.isfile(path) and path.endswith('.safetensors'):
    return path
  f = os.path.join(path, SAFETENSORS)
  return f if os.path.isfile(f) else None


def stablehlo_dir(path: str) -> str | None:
  """The StableHLO directory of an export root or of itself; None when absent."""
  for d in (os.path.join(path, STABLEHLO_DIR), path):
    if os.path.isfile(os.path.join(d, SIGNATURE)):
      return d
  return None


def write_json(path: str, value) -> None:
  with open(path, 'w') as f:
    json.dump(value, f, indent=2, sort_keys=True)
    f.write('\n')


def read_json(path: str):
  with open(path) as f:
    return json.load(f)
