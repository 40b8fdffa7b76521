"""Loading, overriding, validating and saving experiment configs.

A config is a Python file with `get_config(arg=None) -> ml_collections.ConfigDict`. On the command
line: `--config=configs/demo.py[:arg]` and overrides `--config.key.sub=value`. Overrides must name
an existing key (the error suggests the closest ones) and keep its type. Validation runs before
anything is written.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
from typing import Any, Sequence

import ml_collections

from mmjax.core import presets


class ConfigError(ValueError):
  """A bad config: the message is one sentence naming the problem and the fix."""


def import_config_module(path: str):
  """Imports a config file as a module (configs build on each other, e.g. demo_moe on demo)."""
  if not os.path.isfile(path):
    raise ConfigError(f'config file {path!r} does not exist: pass --config=configs/<name>.py.')
  spec = importlib.util.spec_from_file_location(f'_mmjax_config_{abs(hash(path))}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)  # configs are Python by design (DESIGN.md)
  if not hasattr(module, 'get_config'):
    raise ConfigError(f'config file {path!r} has no get_config(arg=None) function.')
  return module


def _all_keys(cfg, prefix: str = '') -> list[str]:
  keys = []
  for k, v in cfg.items():
    name = f'{prefix}{k}'
    keys.append(name)
    if isinstance(v, ml_collections.ConfigDict):
      keys += _all_keys(v, name + '.')
  return keys


def _parse_literal(text: str) -> Any:
  lowered = text.strip().lower()
  if lowered in ('true', 'false'):
    return lowered == 'true'
  if lowered in ('none', 'null'):
    return None
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _coerce(key: str, old: Any, text: str) -> Any:
  """Parses `text` into the type of the existing value `old`, or raises ConfigError."""
  value = _parse_literal(text)
  if old is None or value is None:
    return value
  if isinstance(old, bool):
    if isinstance(value, bool):
      return value
  elif isinstance(old, int):
    if isinstance(value, int) and not isinstance(value, bool):
      return value
  elif isinstance(old, float):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
  elif isinstance(old, str):
    return text
  elif isinstance(old, (tuple, list)):
    if isinstance(value, (tuple, list)):
      return tuple(value)
    if isinstance(value, (int, float, str)):
      return (value,)
  else:
    return value
  raise ConfigError(f'config.{key} expects a {type(old).__name__} (it is {old!r}), '
                    f'got {text!r}: pass a value of that type.')


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
  """Sets `config.<key>` from the string `text`, checking the key exists and the type fits."""
  parts = key.split('.')
  node = config
  for i, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      known = _all_keys(config)
      close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
      hint = f' Did you mean {", ".join("config." + c for c in close)}?' if close else ''
      raise ConfigError(f'unknown config key config.{key}.{hint}')
    if i < len(parts) - 1:
      node = node[part]
  last = parts[-1]
  old = node[last]
  if isinstance(old, ml_collections.ConfigDict):
    raise ConfigError(f'config.{key} is a group of settings, not a value: set one of its keys.')
  with node.unlocked():
    node[last] = _coerce(key, old, text)


def split_override_flags(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Separates `--config.a.b=v` overrides from the other flags of `argv`."""
  rest, overrides = [], []
  for arg in argv:
    if arg.startswith('--config.'):
      if '=' not in arg:
        raise ConfigError(f'override {arg!r} has no value: write it as {arg}=VALUE.')
      key, value = arg[len('--config.'):].split('=', 1)
      overrides.append((key, value))
    else:
      rest.append(arg)
  return rest, overrides


def load_config(config_arg: str, overrides: Sequence[str] | Sequence[tuple[str, str]] = ()
                ) -> ml_collections.ConfigDict:
  """Loads `path.py[:arg]`, applies overrides (`--config.k=v` strings or (k, v) pairs), validates."""
  path, _, arg = config_arg.partition(':')
  module = import_config_module(path)
  config = module.get_config(arg or None)
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f'{path}: get_config must return an ml_collections.ConfigDict.')
  pairs = []
  for o in overrides:
    if isinstance(o, str):
      pairs += split_override_flags([o])[1]
    else:
      pairs.append(tuple(o))
  for key, value in pairs:
    apply_override(config, key, value)
  resolve(config)
  validate(config)
  return config


REQUIRED_KEYS = ('seed', 'total_steps', 'log_every', 'checkpoint_every', 'model', 'mesh',
                 'optimizer', 'tasks')
MESH_AXES = ('data', 'fsdp', 'tensor', 'expert')


def resolve(config: ml_collections.ConfigDict) -> None:
  """Fills model sizes left as None from the `model.size` preset."""
  if 'model' not in config:
    return
  size = config.model.get('size', None)
  if size not in presets.SIZES:
    raise ConfigError(f'config.model.size is {size!r}; choose one of {sorted(presets.SIZES)}.')
  with config.model.unlocked():
    for key, value in presets.SIZES[size].items():
      if config.model.get(key, None) is None:
        config.model[key] = value


def validate(config: ml_collections.ConfigDict) -> None:
  """Cheap semantic checks that need no devices and no data."""
  for key in REQUIRED_KEYS:
    if key not in config:
      raise ConfigError(f'config has no {key!r}: every config needs {", ".join(REQUIRED_KEYS)}.')
  for key in ('total_steps', 'log_every', 'checkpoint_every'):
    if not isinstance(config[key], int) or config[key] < 1:
      raise ConfigError(f'config.{key} must be a positive integer, got {config[key]!r}.')
  sizes = []
  for axis in MESH_AXES:
    v = config.mesh.get(axis, None)
    if not isinstance(v, int) or (v < 1 and v != -1):
      raise ConfigError(f'config.mesh.{axis} must be a positive integer or -1, got {v!r}.')
    sizes.append(v)
  extra = set(config.mesh.keys()) - set(MESH_AXES)
  if extra:
    raise ConfigError(f'config.mesh has unknown axes {sorted(extra)}; the axes are {MESH_AXES}.')
  if sizes.count(-1) > 1:
    raise ConfigError('config.mesh may use -1 (all remaining devices) for one axis only.')
  m = config.model
  if m.width % m.num_heads:
    raise ConfigError(f'config.model.width={m.width} is not divisible by num_heads={m.num_heads}.')
  if not config.tasks:
    raise ConfigError('config.tasks is empty: add at least one task.')
  for name, t in config.tasks.items():
    cap, mods = t.get('caption', '') or '', str(t.modalities).replace(' ', '').split(',')
    if cap and (cap == 'text' or cap not in mods or 'text' not in mods):
      raise ConfigError(f'config.tasks.{name}.caption={cap!r} must name a non-text modality of the '
                        f"task, which also needs text: e.g. modalities='image,text', caption='image'.")
    if cap and int(t.get('text_instances', 1)) > 1:
      raise ConfigError(f'config.tasks.{name} captions one text per example: set text_instances=1 '
                        'or drop caption.')


def to_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
  path = os.path.join(workdir, 'config.json')
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(to_json(config))
  os.replace(tmp, path)
  return path


def config_from_json(text: str) -> ml_collections.ConfigDict:
  """Rebuilds a saved config (lists become tuples, as configs write them)."""
  def fix(x):
    if isinstance(x, dict):
      return {k: fix(v) for k, v in x.items()}
    if isinstance(x, list):
      return tuple(fix(v) for v in x)
    return x
  return ml_collections.ConfigDict(fix(json.loads(text)))
