"""Where `--config=NAME[:arg]` points: a file path as given, or a config shipped with mmjax.

A value that names an existing file, or looks like a path (has a `/` or ends in `.py`), is used
as it is. A bare name such as `demo` or `imp_moe_base` is the shipped `configs/<name>.py`: the
checkout's `configs/` folder, installed in a wheel as the `mmjax.configs` package.
"""

from __future__ import annotations

import os

# mmjax/ (this file is mmjax/config/files.py): configs and sweeps ship as mmjax/configs when installed.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shipped_config_dir() -> str | None:
  """The folder of shipped configs: `mmjax/configs` when installed, else the checkout's `configs/`."""
  installed = os.path.join(_PACKAGE_DIR, 'configs')
  if os.path.isdir(installed):
    return installed
  root = os.path.dirname(_PACKAGE_DIR)
  checkout = os.path.join(root, 'configs')
  if os.path.isdir(checkout) and os.path.isfile(os.path.join(root, 'pyproject.toml')):
    return checkout
  return None


def shipped_config_names() -> list[str]:
  folder = shipped_config_dir()
  if folder is None:
    return []
  return sorted(f[:-3] for f in os.listdir(folder)
                if f.endswith('.py') and not f.startswith('_'))


def resolve_config_path(path: str) -> str:
  """`path` itself if it is a file or looks like one; for a bare shipped name, its file."""
  if os.path.isfile(path) or os.sep in path or '/' in path or path.endswith('.py'):
    return path
  folder = shipped_config_dir()
  if folder is not None and path in shipped_config_names():
    return os.path.join(folder, path + '.py')
  return path


def resolve_sweep_path(path: str) -> str:
  """`--sweep=NAME[:arg]` like `--config`: a file path as given, a bare name the shipped
  `configs/sweeps/<name>.py` (in a wheel: `mmjax/configs/sweeps/`)."""
  name, sep, arg = path.partition(':')
  if os.path.isfile(name) or os.sep in name or '/' in name or name.endswith('.py'):
    return path
  folder = shipped_config_dir()
  candidate = os.path.join(folder, 'sweeps', name + '.py') if folder else ''
  if candidate and os.path.isfile(candidate):
    return candidate + (f':{arg}' if sep else '')
  return path
