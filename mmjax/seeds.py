"""The four seeds of a run, each settable on its own: `config.seeds.{init,data,sampler,dropout}`.

  init     model initialisation (`nnx.Rngs(params=...)`)
  data     every task's example order and augmentations (task `i` reads with `data + 1000 * i`)
  sampler  the AGD sampler's task and resolution draws
  dropout  stochastic layers inside the step: DropToken and MoE router jitter

A seed left as None is `config.seed`, so a config that sets only `seed` behaves as before and a
sweep can vary one source of randomness while holding the others (`mmjax.sweep`).
"""

from __future__ import annotations

import dataclasses

from mmjax.config import ConfigError

KINDS = ('init', 'data', 'sampler', 'dropout')


@dataclasses.dataclass(frozen=True)
class Seeds:
  init: int
  data: int
  sampler: int
  dropout: int


def resolve_seeds(config) -> Seeds:
  """The run's four seeds: `config.seeds.<kind>`, or `config.seed` where that is None/absent."""
  base = config.seed
  if not isinstance(base, int) or isinstance(base, bool) or base < 0:
    raise ConfigError(f'config.seed must be a non-negative integer, got {base!r}.')
  group = config.get('seeds', None) or {}
  unknown = sorted(set(group.keys()) - set(KINDS))
  if unknown:
    raise ConfigError(f'config.seeds has unknown keys {unknown}; the seeds are {KINDS}.')
  values = {}
  for kind in KINDS:
    v = group.get(kind, None)
    if v is None:
      v = base
    elif not isinstance(v, int) or isinstance(v, bool) or v < 0:
      raise ConfigError(f'config.seeds.{kind} must be a non-negative integer or None '
                        f'(= config.seed), got {v!r}.')
    values[kind] = int(v)
  return Seeds(**values)
