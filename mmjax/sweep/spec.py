"""A sweep file and the runs it plans.

A sweep file is Python with `get_sweep() -> Sweep`; `--sweep=FILE.py:ARG` calls `get_sweep(ARG)`
(a file holding several comparisons). Each run's config is built in this order, later settings
winning: the base config file, `Sweep.overrides`, the command line's
`--config.k=v`, the variant's overrides, then the seed settings. An override may be a function
of the config built so far (`lambda c: c.total_steps // 4`), evaluated after the command line,
so it follows what the command line chose (the mixed baseline's step count, a warmup that
scales with `total_steps`); a shared function override yields to the same key given on the
command line, a variant's does not (the variant is what is being compared).
Every value becomes a plain `--config.k=v` flag, so each run is one ordinary
`python -m mmjax.train` command.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Any, Mapping, Sequence

from mmjax import config as config_lib
from mmjax import config_paths
from mmjax.seeds import KINDS

Value = Any  # a config value, or Callable[[ConfigDict], value]


@dataclasses.dataclass(frozen=True)
class Sweep:
  """What a sweep compares.

  config:     the base config, `path.py[:arg]`, relative to the sweep file's folder.
  variants:   {name: {config key: value or function of the config}}; names are folder names.
  metrics:    the metrics to summarise (names as in `mmjax/sweep/collect.py`).
  baseline:   the variant the others are compared with (default: the first).
  vary_seeds: which of config.seeds (init, data, sampler, dropout) take the seed index; the
              others stay at config.seed, the same for every run.
  overrides:  settings for every run: plain values before the command line's, functions of the
              config after it (for keys the command line does not set).
  configs:    {variant: its own base config `path.py[:arg]`}, relative to the sweep file's
              folder, for variants that compare different config files (default: `config`).
  """
  config: str
  variants: Mapping[str, Mapping[str, Value]]
  metrics: Sequence[str]
  baseline: str | None = None
  vary_seeds: Sequence[str] = KINDS
  overrides: Mapping[str, Value] = dataclasses.field(default_factory=dict)
  configs: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Run:
  """One variant at one seed: `workdir` is `DIR/<variant>/seed_<seed>`."""
  variant: str
  seed: int
  workdir: str
  config_arg: str
  overrides: tuple[tuple[str, str], ...]   # ('total_steps', '24'), in order
  total_steps: int

  @property
  def name(self) -> str:
    return f'{self.variant}/seed_{self.seed}'

  def override_flags(self) -> list[str]:
    return [f'--config.{k}={v}' for k, v in self.overrides]


def load_sweep(path: str) -> tuple[Sweep, str]:
  """Imports the sweep file (`FILE.py[:ARG]`); returns (Sweep, base config argument resolved
  against its folder)."""
  path = config_paths.resolve_sweep_path(path)   # a bare name: the shipped sweep of that name
  file, sep, choice = path.partition('.py:')
  path = file + '.py' if sep else path
  if not os.path.isfile(path):
    raise config_lib.ConfigError(f'sweep file {path!r} does not exist: pass --sweep=<name> (a '
                                 'shipped sweep) or --sweep=configs/sweeps/<name>.py.')
  module = _import(path)
  sweep = module.get_sweep(choice) if choice else module.get_sweep()
  if not isinstance(sweep, Sweep):
    raise config_lib.ConfigError(f'{path}: get_sweep() must return a mmjax.sweep.spec.Sweep.')
  _check(sweep, path)
  folder = os.path.dirname(path)
  sweep = dataclasses.replace(sweep, configs={v: _relative_to(folder, c)
                                              for v, c in sweep.configs.items()})
  return sweep, _relative_to(folder, sweep.config)


def _relative_to(folder: str, config_arg: str) -> str:
  file, _, arg = config_arg.partition(':')
  return os.path.normpath(os.path.join(folder, file)) + (f':{arg}' if arg else '')


def _import(path: str):
  spec = importlib.util.spec_from_file_location(f'_mmjax_sweep_{abs(hash(path))}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)  # sweep files are Python, like configs
  if not hasattr(module, 'get_sweep'):
    raise config_lib.ConfigError(f'sweep file {path!r} has no get_sweep() function.')
  return module


def _check(sweep: Sweep, path: str) -> None:
  if not sweep.variants:
    raise config_lib.ConfigError(f'{path}: the sweep has no variants; name at least one.')
  for name in sweep.variants:
    if not name or '/' in name or name.startswith('.') or name in ('plots',):
      raise config_lib.ConfigError(f'{path}: variant name {name!r} cannot be a folder name; '
                                   'use letters, digits, - and _.')
  unknown = sorted(set(sweep.configs) - set(sweep.variants))
  if unknown:
    raise config_lib.ConfigError(f'{path}: configs names {unknown}, which are not variants '
                                 f'{list(sweep.variants)}.')
  if sweep.baseline is not None and sweep.baseline not in sweep.variants:
    raise config_lib.ConfigError(f'{path}: baseline {sweep.baseline!r} is not one of the '
                                 f'variants {list(sweep.variants)}.')
  bad = [k for k in sweep.vary_seeds if k not in KINDS]
  if bad:
    raise config_lib.ConfigError(f'{path}: vary_seeds names {bad}; choose from {KINDS}.')
  if not sweep.metrics:
    raise config_lib.ConfigError(f'{path}: the sweep names no metrics to summarise.')


def baseline_of(sweep: Sweep) -> str:
  return sweep.baseline or next(iter(sweep.variants))


def format_value(value: Any) -> str:
  """A value as `--config.k=` text that mmjax.config parses back to the same value."""
  if isinstance(value, str):
    return value
  if isinstance(value, (list, tuple)):
    return repr(tuple(value))
  return repr(value)


def _resolved(overrides: Mapping[str, Value], config) -> list[tuple[str, str]]:
  out = []
  for key, value in overrides.items():
    if callable(value):
      value = value(config)
    out.append((key, format_value(value)))
  return out


def _merge(*groups: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
  """Later groups win; each key appears once, at its first position."""
  merged: dict[str, str] = {}
  for group in groups:
    for k, v in group:
      merged[k] = v
  return tuple(merged.items())


def plan_runs(sweep: Sweep, config_arg: str, workdir: str, num_seeds: int,
              cli_overrides: Sequence[tuple[str, str]]) -> list[Run]:
  """Every variant x seed, seeds innermost; each run's config is loaded and validated here, so a
  bad key or value fails before anything runs or is written."""
  if num_seeds < 1:
    raise config_lib.ConfigError(f'--seeds={num_seeds}: pass a positive number of seeds.')
  cli = [tuple(o) for o in cli_overrides]
  static = _resolved({k: v for k, v in sweep.overrides.items() if not callable(v)}, None)
  given = {k for k, _ in cli}
  bases = {}
  runs = []
  for variant, overrides in sweep.variants.items():
    variant_arg = sweep.configs.get(variant, config_arg)
    if variant_arg not in bases:  # the shared settings, resolved against this base config
      after_cli = config_lib.load_config(variant_arg, _merge(static, cli))
      derived = _resolved({k: v for k, v in sweep.overrides.items()
                           if callable(v) and k not in given}, after_cli)
      shared = _merge(static, cli, derived)
      bases[variant_arg] = (shared, config_lib.load_config(variant_arg, shared))
    shared, base = bases[variant_arg]
    variant_flags = _merge(shared, _resolved(overrides, base))
    for seed in range(num_seeds):
      flags = _merge(variant_flags, [(f'seeds.{k}', str(seed)) for k in sweep.vary_seeds])
      try:
        config = config_lib.load_config(variant_arg, flags)
      except config_lib.ConfigError as e:
        raise config_lib.ConfigError(f'variant {variant!r}: {e}') from None
      runs.append(Run(variant, seed, os.path.join(workdir, variant, f'seed_{seed}'), variant_arg,
                      flags, int(config.total_steps)))
  return runs

