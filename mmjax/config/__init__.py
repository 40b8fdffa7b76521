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
import traceback
from typing import Any, Sequence

import ml_collections

from mmjax import paths
from mmjax.config import checks as config_checks
from mmjax.config import generative as config_generative
from mmjax.config import files as config_files
from mmjax.core import choices, presets
from mmjax.errors import UserError
from mmjax.config.defaults import setting


class ConfigError(UserError, ValueError):
  """A bad config: the message is one sentence naming the problem and the fix."""


def _where(error: BaseException, path: str) -> str:
  """`file:line` of the innermost frame of `error` in a config file (else in `path`)."""
  def short(name: str) -> str:
    rel = os.path.relpath(name)
    return name if rel.startswith('..') else rel
  if isinstance(error, SyntaxError) and error.filename:
    return f'{short(error.filename)}:{error.lineno}'
  frames = [f for f in traceback.extract_tb(error.__traceback__)
            if os.path.abspath(f.filename) == os.path.abspath(path)]
  frames = frames or [f for f in traceback.extract_tb(error.__traceback__)
                      if f'{os.sep}configs{os.sep}' in f.filename]
  return f'{short(frames[-1].filename)}:{frames[-1].lineno}' if frames else path


def config_file_error(error: BaseException, path: str) -> ConfigError:
  """A config file that fails to import or build, as `file:line: message` in one sentence."""
  if isinstance(error, ConfigError):
    return error
  if isinstance(error, SyntaxError):
    message = error.msg
  else:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ''
    message = text if isinstance(error, ValueError) and text else (
        f'{type(error).__name__}: {text}' if text else type(error).__name__)
  return ConfigError(f'{_where(error, path)}: {message.rstrip(".")}.')


def import_config_module(path: str):
  """Imports a config file (or a shipped config by bare name) as a module; configs build on each
  other, e.g. demo_moe on demo."""
  path = config_files.resolve_config_path(path)
  if not os.path.isfile(path):
    shipped = ', '.join(config_files.shipped_config_names()) or 'none found'
    raise ConfigError(f'config file {path!r} does not exist: pass a config file path or the name '
                      f'of a shipped config ({shipped}).')
  spec = importlib.util.spec_from_file_location(f'_mmjax_config_{abs(hash(path))}', path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)  # configs are Python by design: loops, variants, comments
  except Exception as e:  # noqa: BLE001 - any error in the user's file is reported as file:line
    raise config_file_error(e, path) from e
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
  try:
    config = module.get_config(arg or None)
  except Exception as e:  # noqa: BLE001 - e.g. an argument the config does not take
    raise config_file_error(e, path) from e
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
MESH_AXES = choices.MESH_AXES


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
  config_checks.check_values(config, ConfigError)
  for key in ('total_steps', 'log_every', 'checkpoint_every'):
    if not isinstance(config[key], int) or config[key] < 1:
      raise ConfigError(f'config.{key} must be a positive integer, got {config[key]!r}.')
  sizes = []
  for axis in MESH_AXES:
    v = config.mesh.get(axis, None)
    if not isinstance(v, int) or (v < 1 and v != -1):
      raise ConfigError(f'config.mesh.{axis} must be a positive integer or -1, got {v!r}.')
    sizes.append(v)
  layout = {f'dcn_{a}' for a in MESH_AXES} | {'num_slices'}  # hybrid ICI x DCN factors
  for key in sorted(layout & set(config.mesh.keys())):
    v = config.mesh[key]
    if not isinstance(v, int) or v < (0 if key == 'num_slices' else 1):
      raise ConfigError(f'config.mesh.{key} must be a positive integer, got {v!r}.')
  extra = set(config.mesh.keys()) - set(MESH_AXES) - layout
  if extra:
    raise ConfigError(f'config.mesh has unknown axes {sorted(extra)}; the axes are {MESH_AXES}.')
  if sizes.count(-1) > 1:
    raise ConfigError('config.mesh may use -1 (all remaining devices) for one axis only.')
  m = config.model
  if m.width % m.num_heads:
    raise ConfigError(f'config.model.width={m.width} is not divisible by num_heads={m.num_heads}: '
                      'choose a number of heads that divides the width.')
  if not config.tasks:
    raise ConfigError('config.tasks is empty: add at least one task.')
  for name, t in config.tasks.items():
    cap, mods = setting(t, 'tasks.*.caption') or '', str(t.modalities).replace(' ', '').split(',')
    if cap and (cap == 'text' or cap not in mods or 'text' not in mods):
      raise ConfigError(f'config.tasks.{name}.caption={cap!r} must name a non-text modality of the '
                        f"task, which also needs text: e.g. modalities='image,text', caption='image'.")
    if cap and int(setting(t, 'tasks.*.text_instances')) > 1:
      raise ConfigError(f'config.tasks.{name} captions one text per example: set text_instances=1 '
                        'or drop caption.')
  config_generative.check_generative_tasks(config, ConfigError)


def to_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
  path = paths.join(workdir, 'config.json')
  paths.write_text(path, to_json(config))
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


def load_run_config(workdir: str, overrides: Sequence[tuple[str, str]] = ()
                    ) -> ml_collections.ConfigDict:
  """The config a training run saved in `workdir/config.json`, with overrides applied."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise ConfigError(f'{path} does not exist: pass --config=NAME or the --workdir of a training '
                      'run (mmjax-train writes it).')
  with open(path) as f:
    config = config_from_json(f.read())
  for key, value in overrides:
    apply_override(config, key, value)
  validate(config)
  return config
