"""A trained discrete tokenizer on disk, in mmjax's export layout (core/exports/layout.py):

  DIR/model.safetensors     flat named parameters (enc_0.kernel, ...), the spec in its metadata
  DIR/config.json           the tokenizer's spec (discrete_tokenizer.make_spec)
  DIR/export_report.json    kind 'fourm_tokenizer', training steps, reconstruction and codebook
                            metrics (train/tokenizer_training.py)
  DIR/README.md             a short card with those numbers

`load` is cached per path: the 4M train step reads the frozen weights once per process.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np

from mmjax.core.exports import layout
from mmjax.core.exports import safetensors_format

KIND = 'fourm_tokenizer'


class TokenizerFileError(ValueError):
  """A path that holds no 4M tokenizer: one sentence naming the fix."""


def is_tokenizer(path: str) -> bool:
  f = os.path.join(path, layout.REPORT)
  return os.path.isfile(f) and layout.read_json(f).get('kind') == KIND


def save(out: str, params: dict, spec: dict, report: dict) -> None:
  """Writes the tokenizer to `out` (created); the report file last, so a directory with it is
  complete."""
  os.makedirs(out, exist_ok=True)
  params = {k: {n: np.asarray(v, np.float32) for n, v in p.items()} for k, p in params.items()}
  safetensors_format.save(os.path.join(out, layout.SAFETENSORS), params, json.dumps(spec),
                          int(report.get('steps', 0)), 'float32')
  layout.write_json(os.path.join(out, layout.CONFIG), spec)
  lines = [f'# 4M {spec["modality"]} tokenizer (FSQ levels {spec["levels"]}, '
           f'{int(np.prod(spec["levels"]))} codes, {int(np.prod(spec["grid"]))} tokens per '
           'example)', '', 'Trained by `python -m tools.train_tokenizer`.', '']
  lines += [f'- {k}: {v}' for k, v in sorted(report.get('metrics', {}).items())]
  with open(os.path.join(out, layout.MODEL_CARD), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  layout.write_json(os.path.join(out, layout.REPORT),
                    dict(report, kind=KIND, formats=['safetensors'],
                         files=[layout.SAFETENSORS, layout.CONFIG, layout.MODEL_CARD]))


@functools.lru_cache(maxsize=8)
def _load(path: str):
  spec = layout.read_json(os.path.join(path, layout.CONFIG))
  params = safetensors_format.load(os.path.join(path, layout.SAFETENSORS))
  return params, spec


def load(path: str) -> tuple[dict, dict]:
  """-> (params: nested dict of float32 numpy arrays, spec dict)."""
  path = os.path.abspath(os.path.expanduser(path))
  if not is_tokenizer(path):
    raise TokenizerFileError(f'{path} holds no 4M tokenizer (no {layout.REPORT} of kind '
                             f'{KIND!r}): pass the --output of python -m tools.train_tokenizer, or '
                             "leave the path '' so the run trains one.")
  return _load(path)


def spec_of(path: str) -> dict:
  return load(path)[1]


def report_of(path: str) -> dict:
  return layout.read_json(os.path.join(os.path.abspath(path), layout.REPORT))
