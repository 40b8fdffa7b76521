"""One safetensors file of flat named parameters (see `naming.py`), readable without mmjax:

  from safetensors.numpy import load_file       # numpy arrays; BF16 needs ml_dtypes
  flat = load_file('OUT/model.safetensors')     # {'encoder.block_0.attn.qkv.kernel': ...}

Header metadata (all strings): `format` ('mmjax-params'), `naming` (the scheme in one line),
`step`, `dtype` ('float32' | 'bfloat16') and `config` (the run's config as JSON).
"""

from __future__ import annotations

import json

import os

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from mmjax.core.exports import param_names as naming

FORMAT = 'mmjax-params'


def save(path: str, params: dict, config_json: str, step: int, dtype: str) -> None:
  """Writes `params` (nested dict of numpy arrays) to `path`."""
  flat = {k: np.array(v, order='C', copy=True) for k, v in naming.flatten(params).items()}
  save_file(flat, path, metadata={'format': FORMAT, 'naming': naming.SCHEME, 'step': str(step),
                                  'dtype': dtype, 'config': config_json})
  # safetensors writes through a private temporary file (mode 0600); an export is an ordinary
  # file, readable as the umask allows.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(path, 0o666 & ~umask)


def metadata(path: str) -> dict:
  """The header metadata with `step` as int and `config` parsed (a dict)."""
  with safe_open(path, 'numpy') as f:
    meta = dict(f.metadata() or {})
  if meta.get('format') != FORMAT:
    raise ValueError(f'{path} is not an mmjax safetensors export (metadata format is '
                     f'{meta.get("format")!r}, not {FORMAT!r}).')
  meta['step'] = int(meta['step'])
  meta['config'] = json.loads(meta['config'])
  return meta


def describe(path: str) -> list[dict]:
  """`[{'name', 'shape', 'dtype'}]` from the header alone (no tensor is read)."""
  with safe_open(path, 'numpy') as f:
    return [{'name': k, 'shape': list(f.get_slice(k).get_shape()),
             'dtype': str(f.get_slice(k).get_dtype())} for k in sorted(f.keys())]


def load(path: str) -> dict:
  """The nested params dict (numpy arrays, stored dtype)."""
  return naming.unflatten(load_file(path))
