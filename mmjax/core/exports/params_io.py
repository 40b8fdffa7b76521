"""Reading params-only exports back: `load_params` for training (`init_from`), evaluation and tools.

  params, config = load_params('OUT')                     # numpy, stored dtype
  params, config = load_params('OUT', abstract_params)     # checked, cast, sharded like it

`path` may be an export root, its `orbax/` directory, or a `.safetensors` file; a root with
both reads the orbax checkpoint. `abstract_params` is a params pytree of `jax.ShapeDtypeStruct`
(e.g. `abstract_train_state(config, mesh)[1]['params']`): names and shapes must match
(`CheckpointMismatchError` names the first that differs), each leaf is cast to its dtype and,
when it has a sharding, restored straight onto it (no full copy per device). Writing exports
and the model-level readers (`mmjax.export.load`) live in `mmjax/export/`.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from mmjax import config as config_lib
from mmjax.core import checkpointing
from mmjax.core.exports import layout
from mmjax.core.exports import params_only
from mmjax.core.exports import safetensors_format
from mmjax.errors import UserError


class ExportError(UserError, ValueError):
  """Bad export input (workdir, step, format, dtype, output, a path that holds no export): one
  sentence naming the fix. Raised here when reading, and by `mmjax.export` when writing."""


def is_params_export(path: str) -> bool:
  """Whether `path` holds exported params (orbax params-only or safetensors)."""
  return bool(layout.orbax_dir(path) or layout.safetensors_file(path))


def _source(path: str) -> tuple[str, str]:
  d = layout.orbax_dir(path)
  if d:
    return 'orbax', d
  f = layout.safetensors_file(path)
  if f:
    return 'safetensors', f
  raise ExportError(f'{path} holds no exported params (orbax/ or model.safetensors): pass the '
                    '--output of python -m mmjax.export, its orbax/ folder or a .safetensors file.')


def export_step(path: str) -> int:
  """The training step the exported params come from."""
  kind, where = _source(path)
  if kind == 'orbax':
    return int(params_only.metadata(where)['step'])
  return safetensors_format.metadata(where)['step']


def _config(kind: str, where: str):
  if kind == 'orbax':
    with open(os.path.join(where, layout.CONFIG)) as f:
      return config_lib.config_from_json(f.read())
  try:
    meta = safetensors_format.metadata(where)
  except ValueError as e:
    raise ExportError(f'{e} Pass a file written by python -m mmjax.export.') from None
  return config_lib.config_from_json(json.dumps(meta['config']))


def _place(params, abstract_params):
  def one(x, a):
    x = np.asarray(x).astype(a.dtype)
    sharding = getattr(a, 'sharding', None)
    return jax.device_put(x, sharding) if sharding is not None else x
  return jax.tree.map(one, params, abstract_params)


def load_params(path: str, abstract_params=None):
  """-> (params nested dict, config ConfigDict) of a params-only export (see module doc)."""
  kind, where = _source(path)
  config = _config(kind, where)
  if kind == 'orbax':
    if abstract_params is None:
      return params_only.restore(where), config
    checkpointing.check_compatible(params_only.structure(where), abstract_params,
                                   f'export {where}')
    leaves = jax.tree.leaves(abstract_params)
    if leaves and all(getattr(a, 'sharding', None) is not None for a in leaves):
      target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                            abstract_params)
      return params_only.restore(where, target), config
    return _place(params_only.restore(where), abstract_params), config
  params = safetensors_format.load(where)
  if abstract_params is None:
    return params, config
  checkpointing.check_compatible(params, abstract_params, f'export {where}')
  return _place(params, abstract_params), config
