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
import hashlib
import importlib.util
import itertools
import json
import os
import random
from typing import Any, Mapping, Sequence

from mmjax import config as config_lib
from mmjax.config import files as config_files
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
  prepare:    {variant: [argv, ...]}: commands run before a run first trains (e.g.
              `tools.upcycle` writing the checkpoint the variant starts from); in an argument,
              `{workdir}`, `{config}`, `{seed}` and `{here}` become the run's folder, its base
              config, its seed index and the sweep file's folder; `{flags}` (a whole argument)
              the run's `--config.k=v` flags; `python` the running interpreter.
  """
  config: str
  variants: Mapping[str, Mapping[str, Value]]
  metrics: Sequence[str]
  baseline: str | None = None
  vary_seeds: Sequence[str] = KINDS
  overrides: Mapping[str, Value] = dataclasses.field(default_factory=dict)
  configs: Mapping[str, str] = dataclasses.field(default_factory=dict)
  prepare: Mapping[str, Sequence[Sequence[str]]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Run:
  """One variant at one seed: `workdir` is `DIR/<variant>/seed_<seed>`."""
  variant: str
  seed: int
  workdir: str
  config_arg: str
  overrides: tuple[tuple[str, str], ...]   # ('total_steps', '24'), in order
  total_steps: int
  config_json: str = '{}'  # the resolved config, canonical JSON (sorted keys)
  checkpoint_every: int = 0
  prepare: tuple[tuple[str, ...], ...] = ()

  @property
  def config_hash(self) -> str:
    """sha256 (first 16 hex digits) of the resolved config: what the run trains."""
    return config_hash(self.config_json)

  @property
  def variant_hash(self) -> str:
    """The hash without `seeds`: the same for every seed of a variant."""
    config = json.loads(self.config_json)
    config.pop('seeds', None)
    return config_hash(canonical_json(config))

  @property
  def name(self) -> str:
    return f'{self.variant}/seed_{self.seed}'

  def override_flags(self) -> list[str]:
    return [f'--config.{k}={v}' for k, v in self.overrides]


def canonical_json(value) -> str:
  return json.dumps(value, sort_keys=True, separators=(',', ':'), default=str)


def config_hash(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def first_difference(old, new, prefix: str = '', added_ok=None) -> str | None:
  """The first key (dotted, sorted order) where two JSON configs differ, as `key: old -> new`.
  `added_ok(key, value)` True lets a key absent from `old` pass (a key added since, at its
  default)."""
  if isinstance(old, dict) and isinstance(new, dict):
    for k in sorted(set(old) | set(new)):
      where = f'{prefix}.{k}' if prefix else k
      if k not in old:
        if added_ok is not None and added_ok(where, new[k]):
          continue
        return f'{where}: absent -> {json.dumps(new[k], default=str)[:80]}'
      if k not in new:
        return f'{where}: {json.dumps(old[k], default=str)[:80]} -> absent'
      d = first_difference(old[k], new[k], where, added_ok)
      if d:
        return d
    return None
  if old != new:
    return (f'{prefix or "(config)"}: {json.dumps(old, default=str)[:80]} -> '
            f'{json.dumps(new, default=str)[:80]}')
  return None


def load_sweep(path: str) -> tuple[Sweep, str]:
  """Imports the sweep file (`FILE.py[:ARG]`); returns (Sweep, base config argument resolved
  against its folder)."""
  path = config_files.resolve_sweep_path(path)   # a bare name: the shipped sweep of that name
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
  here = os.path.normpath(folder or '.')
  sweep = dataclasses.replace(
      sweep, configs={v: _relative_to(folder, c) for v, c in sweep.configs.items()},
      prepare={v: [[a.replace('{here}', here) for a in argv] for argv in cmds]
               for v, cmds in sweep.prepare.items()})
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
  unknown = sorted((set(sweep.configs) | set(sweep.prepare)) - set(sweep.variants))
  if unknown:
    raise config_lib.ConfigError(f'{path}: configs names {unknown}, which are not variants '
                                 f'{list(sweep.variants)} (nor may prepare).')
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
              cli_overrides: Sequence[tuple[str, str]], seed_offset: int = 0) -> list[Run]:
  """Every variant x seed (seeds `seed_offset .. seed_offset + num_seeds - 1`), seeds innermost;
  each run's config is loaded and validated here, so a bad key or value fails before anything
  runs or is written."""
  if num_seeds < 1:
    raise config_lib.ConfigError(f'--seeds={num_seeds}: pass a positive number of seeds.')
  if seed_offset < 0:
    raise config_lib.ConfigError(f'--seed_offset={seed_offset}: pass 0 or a positive offset.')
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
    for seed in range(seed_offset, seed_offset + num_seeds):
      flags = _merge(variant_flags, [(f'seeds.{k}', str(seed)) for k in sweep.vary_seeds])
      try:
        config = config_lib.load_config(variant_arg, flags)
      except config_lib.ConfigError as e:
        raise config_lib.ConfigError(f'variant {variant!r}: {e}') from None
      runs.append(Run(variant, seed, os.path.join(workdir, variant, f'seed_{seed}'), variant_arg,
                      flags, int(config.total_steps), canonical_json(config.to_dict()),
                      int(config.checkpoint_every),
                      tuple(tuple(a) for a in sweep.prepare.get(variant, ()))))
  return runs


def interleave(runs: Sequence[Run], order_seed: int = 0) -> list[Run]:
  """The runs seed by seed (every variant of the first seed, then of the next, ...), the
  variants of each seed in a random order drawn from `order_seed` and the seed: neither a
  variant nor a seed always runs first, so a drift of the machine over the sweep does not line
  up with one variant."""
  by_seed: dict[int, list[Run]] = {}
  for r in runs:
    by_seed.setdefault(r.seed, []).append(r)
  out = []
  for seed in sorted(by_seed):
    group = list(by_seed[seed])
    random.Random(order_seed * 1_000_003 + seed).shuffle(group)
    out += group
  return out


def parse_vary(items: Sequence[str]) -> list[tuple[str, list[str]]]:
  """`['optimizer.lr=1e-3,3e-3', ...]` -> [(key, [values])]: a value list per config key; the
  first value of each is the baseline's."""
  out = []
  for item in items:
    key, sep, values = item.partition('=')
    key = key.strip().removeprefix('config.')
    vals = [v.strip() for v in split_values(values)]
    if not sep or not key or len(vals) < 2 or any(not v for v in vals):
      raise config_lib.ConfigError(f'--vary={item!r}: write --vary=KEY=A,B[,...] with a config key '
                                   'and at least two values (the first is the baseline).')
    if key in dict(out):
      raise config_lib.ConfigError(f'--vary names {key} twice: give all its values in one --vary.')
    if len(set(vals)) != len(vals):
      raise config_lib.ConfigError(f'--vary={item!r} repeats a value: give each value once.')
    out.append((key, vals))
  return out


def split_values(text: str) -> list[str]:
  """Splits on commas outside brackets, so a tuple value `(1,2)` stays one value."""
  out, depth, cur = [], 0, ''
  for ch in text:
    depth += ch in '([{'
    depth -= ch in ')]}'
    if ch == ',' and depth == 0:
      out.append(cur)
      cur = ''
    else:
      cur += ch
  out.append(cur)
  return out


def _folder_value(value: str) -> str:
  return ''.join(ch if ch.isalnum() or ch in '.-_+' else '_' for ch in value)


def grid_sweep(config: str, vary: Sequence[tuple[str, list[str]]],
               metrics: Sequence[str]) -> Sweep:
  """The sweep of every combination of the `--vary` values over `config` (first combination:
  the baseline); a variant is named `key=value[,key=value]` by the keys' last parts."""
  keys = [k for k, _ in vary]
  short = [k.rsplit('.', 1)[-1] for k in keys]
  if len(set(short)) != len(short):
    short = keys
  variants = {}
  for combo in itertools.product(*[vals for _, vals in vary]):
    name = ','.join(f'{s}={_folder_value(v)}' for s, v in zip(short, combo))
    if name in variants:
      raise config_lib.ConfigError(f'--vary values {combo} give the folder name {name!r} twice; '
                                   'use values that differ in letters or digits.')
    variants[name] = dict(zip(keys, combo))
  return Sweep(config=config, variants=variants, metrics=tuple(metrics))

