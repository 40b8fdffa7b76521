"""Freezing parameters by path: `config.optimizer.freeze` is a tuple of regular expressions, each
matched against whole flat parameter names (`encoder.block_0.attn.qkv.kernel`, see
mmjax/core/exports/param_names.py), e.g. `r'encoder\\..*'` freezes the shared encoder.

A frozen parameter gets no gradient (`stop_gradient` in the step, so nothing is computed or
all-reduced for it), no update, no optimizer state (`optax.multi_transform` gives the frozen
label `optax.set_to_zero()`, so Adam's moments are not allocated for it) and no weight decay.
The params tree, and so checkpoints and exports, keep their layout.
"""

from __future__ import annotations

import re

import jax

from mmjax.core.exports.param_names import SEPARATOR
from mmjax.config.defaults import setting

FROZEN, TRAINED = 'frozen', 'trained'


class FreezeError(ValueError):
  """A freeze pattern that is not a regular expression, matches nothing, or matches everything."""


def patterns(cfg) -> tuple[str, ...]:
  """`cfg` is `config.optimizer`; its `freeze` patterns (a single string is one pattern)."""
  value = setting(cfg, 'optimizer.freeze') or ()
  return (value,) if isinstance(value, str) else tuple(value)


def path_name(path) -> str:
  """The flat parameter name of a pytree key path."""
  return SEPARATOR.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)


def frozen_mask(params, pats) -> dict:
  """True for the leaves whose flat name fully matches one of `pats`."""
  compiled = [re.compile(p) for p in pats]
  return jax.tree_util.tree_map_with_path(
      lambda path, _: any(c.fullmatch(path_name(path)) for c in compiled), params)


def labels(pats):
  """`params -> {FROZEN | TRAINED}` per leaf, for `optax.multi_transform`."""
  def fn(params):
    mask = frozen_mask(params, pats)
    return jax.tree.map(lambda f: FROZEN if f else TRAINED, mask)
  return fn


def stop_frozen(params, pats):
  """`params` with the frozen leaves behind `stop_gradient` (their gradient is a zero constant)."""
  if not pats:
    return params
  mask = frozen_mask(params, pats)
  return jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, mask)


def keep_frozen(new, old, pats):
  """`new` with the frozen leaves taken from `old` unchanged (bit for bit)."""
  if not pats:
    return new
  mask = frozen_mask(old, pats)
  return jax.tree.map(lambda n, o, f: o if f else n, new, old, mask)


def check(params, pats) -> list[str]:
  """Validates `pats` against a params tree; returns the frozen flat names."""
  for p in pats:
    try:
      re.compile(p)
    except re.error as e:
      raise FreezeError(f'config.optimizer.freeze pattern {p!r} is not a regular expression '
                        f'({e}): fix it, e.g. r"encoder\\..*".') from None
  names = [path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  for p in pats:
    if not any(re.fullmatch(p, n) for n in names):
      raise FreezeError(f'config.optimizer.freeze pattern {p!r} matches no parameter name (names '
                        f'look like {names[0]!r}; python -m tools.inspect_checkpoint lists them): '
                        'fix the pattern.')
  frozen = [n for n in names if any(re.fullmatch(p, n) for p in pats)]
  if pats and len(frozen) == len(names):
    raise FreezeError('config.optimizer.freeze matches every parameter, so nothing would train: '
                      'narrow the patterns.')
  return frozen


def check_config(config, params) -> list[str]:
  """Preflight for a run with frozen parameters: valid patterns and an `init_from` export to take
  the frozen values from (`config.init_from_hint` says which); returns the frozen names."""
  pats = patterns(config.optimizer)
  frozen = check(params, pats)
  if pats and not setting(config, 'init_from'):
    hint = setting(config, 'init_from_hint') or ('the --output of python -m mmjax.export for a run '
                                                'of the same model')
    raise FreezeError(f'config.optimizer.freeze keeps {len(frozen)} parameters at their initial '
                      f'values, so config.init_from must name the export they come from: pass '
                      f'--config.init_from=DIR with {hint}.')
  return frozen
