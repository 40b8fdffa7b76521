"""`config.init_from_only`: take only the parameters whose flat names match these regexes from
the `config.init_from` export, the rest keep their fresh initialisation. LiT from a published
model: the image tower comes from the imported CLIP (and stays locked by
`config.optimizer.freeze`), the text tower starts from scratch, with its own vocabulary and
sizes. Every parameter the patterns match must be in the export with the model's shape, and
every frozen parameter must be among them.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import numpy as np

from mmjax.config import ConfigError
from mmjax.core.exports import param_names as naming
from mmjax.core.exports.params_io import load_params
from mmjax.train import freezing


class PartialInitError(ConfigError):
  """init_from_only names no parameter, or one the export lacks; one sentence."""


@dataclasses.dataclass
class Partial:
  values: dict   # flat name -> array placed like the model's parameter


def _flat_paths(tree) -> dict:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {freezing.path_name(path): leaf for path, leaf in leaves}


def load(config, abstract_params) -> Partial:
  """The matching parameters of `config.init_from`, cast and placed like `abstract_params`."""
  pats = [re.compile(p) for p in config.init_from_only]
  target = _flat_paths(abstract_params)
  chosen = sorted(n for n in target if any(p.fullmatch(n) for p in pats))
  if not chosen:
    raise PartialInitError(f'config.init_from_only {tuple(config.init_from_only)} matches no '
                           'parameter of the model: use flat names such as encoder_image\\..*.')
  frozen = set(freezing.check(abstract_params, freezing.patterns(config.optimizer)))
  missing = sorted(frozen - set(chosen))
  if missing:
    raise PartialInitError(f'parameter {missing[0]} is frozen but not taken from the export: add '
                           'it to config.init_from_only.')
  params, _ = load_params(config.init_from)
  flat = naming.flatten(params)
  values = {}
  for name in chosen:
    if name not in flat:
      raise PartialInitError(f'the export {config.init_from} has no parameter {name} that '
                             'config.init_from_only asks for.')
    a = target[name]
    if tuple(np.shape(flat[name])) != tuple(a.shape):
      raise PartialInitError(f'export parameter {name} has shape {tuple(np.shape(flat[name]))}, '
                             f'the model {tuple(a.shape)}: use a config with that tower.')
    x = np.asarray(flat[name]).astype(a.dtype)
    sharding = getattr(a, 'sharding', None)
    values[name] = jax.device_put(x, sharding) if sharding is not None else x
  return Partial(values)


def merge(params, init):
  """`params` with the loaded values put in: all of them (a full export) or a `Partial`."""
  if not isinstance(init, Partial):
    return init
  paths = jax.tree_util.tree_flatten_with_path(params)[0]
  names = [freezing.path_name(path) for path, _ in paths]
  leaves = [init.values.get(n, leaf) for n, (_, leaf) in zip(names, paths)]
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), leaves)
