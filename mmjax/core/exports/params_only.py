"""The params-only orbax checkpoint: the model's parameters with no optimizer or data state.

  orbax/params/     orbax StandardCheckpointer directory of the nested params dict, saved from
                    host (numpy) arrays, so it carries no sharding and restores on any mesh
  orbax/config.json the run's config, beside the weights
  orbax/meta.json   {'step', 'dtype', 'format': 'mmjax-params-only', 'num_params'}

Restoring onto an abstract target `[ShapeDtypeStruct(shape, dtype, sharding)]` reads each
shard straight onto its devices and casts to the target dtype (bf16 -> float32 for training).
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from mmjax.core.exports import layout

FORMAT = 'mmjax-params-only'


def save(directory: str, params: dict, config_json: str, step: int, dtype: str) -> None:
  """Writes `params` (nested dict of numpy arrays) into `directory` (created, must be new)."""
  os.makedirs(directory)
  params = jax.tree.map(np.asarray, params)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(os.path.join(directory, layout.ORBAX_PARAMS), params)
    ckpt.wait_until_finished()
  with open(os.path.join(directory, layout.CONFIG), 'w') as f:
    f.write(config_json)
  count = int(sum(np.size(x) for x in jax.tree.leaves(params)))
  layout.write_json(os.path.join(directory, layout.ORBAX_META),
                    {'format': FORMAT, 'step': int(step), 'dtype': dtype, 'num_params': count})


def metadata(directory: str) -> dict:
  return layout.read_json(os.path.join(directory, layout.ORBAX_META))


def structure(directory: str) -> dict:
  """Nested dict of the stored arrays' metadata (`.shape`, `.dtype`); no array is read."""
  with ocp.StandardCheckpointer() as ckpt:
    meta = ckpt.metadata(os.path.join(os.path.abspath(directory), layout.ORBAX_PARAMS))
  tree = getattr(meta, 'item_metadata', meta)
  return getattr(tree, 'tree', tree)


def restore(directory: str, target=None) -> dict:
  """The stored params: numpy in the stored dtype, or onto `target`'s dtypes and shardings."""
  path = os.path.join(os.path.abspath(directory), layout.ORBAX_PARAMS)
  with ocp.StandardCheckpointer() as ckpt:
    return ckpt.restore(path) if target is None else ckpt.restore(path, target)
