"""JAX's own options on any mmjax command line: `--jax_debug_nans`, `--jax_log_compiles`,
`--jax_disable_jit`, `--jax_debug_infs`, `--jax_platforms=cpu`, ... (every `jax.config` option).

A bare `--jax_NAME` sets a boolean option to True; `--jax_NAME=VALUE` sets any option, VALUE
parsed to the option's current type. They are applied before anything touches a device.
"""

from __future__ import annotations

import difflib
from typing import Sequence

import jax

from mmjax.config import ConfigError

PREFIX = '--jax_'


def split_jax_flags(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str | None]]]:
  """Separates `--jax_*` flags from `argv` -> (other args, [(option name, value text or None)])."""
  rest, flags = [], []
  for arg in argv:
    if arg.startswith(PREFIX):
      name, eq, value = arg[2:].partition('=')
      flags.append((name, value if eq else None))
    else:
      rest.append(arg)
  return rest, flags


def _parse(name: str, old, text: str | None):
  if isinstance(old, bool):
    lowered = 'true' if text is None else text.strip().lower()
    if lowered in ('true', '1', 'yes'):
      return True
    if lowered in ('false', '0', 'no'):
      return False
    raise ConfigError(f'--{name} takes true or false, got {text!r}.')
  if text is None:
    raise ConfigError(f'--{name} needs a value: write it as --{name}=VALUE.')
  try:
    if isinstance(old, int):
      return int(text)
    if isinstance(old, float):
      return float(text)
  except ValueError:
    raise ConfigError(f'--{name} expects a {type(old).__name__}, got {text!r}.') from None
  return text


def apply_jax_flags(flags: Sequence[tuple[str, str | None]]) -> None:
  """`jax.config.update` for each flag; an unknown name or bad value raises ConfigError."""
  known = jax.config.values
  for name, text in flags:
    if name not in known:
      close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
      hint = f' Did you mean {", ".join("--" + c for c in close)}?' if close else ''
      raise ConfigError(f'--{name} is not a JAX option.{hint}')
    jax.config.update(name, _parse(name, known[name], text))
