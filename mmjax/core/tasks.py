"""Tasks: one dataset + modalities + objective + batch size + resolution — what a step is about.

A `Task` is frozen and hashable: it is the static argument of the train step. A task may list
several resolutions; `Task.signatures()` gives one concrete task per resolution, and the step is
compiled once per concrete task. No loader code here: the loaders live in `mmjax/data/`, the AGD
sampler that picks each step's task in `mmjax/train/agd_sampler.py`.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from mmjax.core import modalities as modalities_lib
from mmjax.core import objectives as objectives_lib
from mmjax.core.objectives import key

MODALITIES = modalities_lib.names()


def _describe(self) -> str:
  parts = [f'{k}={v}' for k, v in dataclasses.asdict(self).items() if v is not None]
  return ','.join(parts)


# Input sizes of one signature, one field per resolution field of the modality table
# (core/modalities.py: image_size, num_frames, audio_samples, text_length, ...); a field is None
# when the task does not use that modality.
Resolution = dataclasses.make_dataclass(
    'Resolution', [(f, 'int | None', dataclasses.field(default=d))
                   for f, d in modalities_lib.resolution_fields()],
    frozen=True, namespace={'describe': _describe, '__module__': __name__,
                            '__doc__': 'Input sizes of one signature (see core/modalities.py).'})


@dataclasses.dataclass(frozen=True, init=False)
class Task:
  """One training task: what every objective shares (dataset, modalities, batch, resolutions,
  AGD weight/interval, DropToken, text instances) and one record per objective
  (`core/objectives.py`), in `objectives`. An objective key reads as a flat attribute
  (`task.caption`, `task.contrast`) and is accepted as a flat keyword by the constructor and by
  `dataclasses.replace`."""
  name: str
  dataset: str
  split: str = key('train', str)
  modalities: tuple[str, ...]
  batch_size: int
  resolutions: tuple[Resolution, ...]
  weight: float = key(1.0, float)
  interval: int = key(1, int)
  # (dataset feature, mmjax modality or 'label')
  feature_map: tuple[tuple[str, str], ...] = key(
      (), lambda v: tuple(sorted(dict(v or {}).items())), ml_collections.ConfigDict)
  drop_token: float = key(0.0, float)
  text_instances: int = key(1, int)  # > 1: text is [batch, instances, length] (MIL-NCE positives)
  objectives: tuple[objectives_lib.Objective, ...] = ()  # one per registered objective

  def __init__(self, *args, objectives: tuple = (), **keys):
    """`Task(name, dataset, split, modalities, batch_size, resolutions, ...)`; objective keys
    (`caption='image'`) may come flat, on top of the records in `objectives`."""
    own = [f for f in dataclasses.fields(self) if f.name != 'objectives']
    if len(args) > len(own):
      raise TypeError(f'Task takes at most {len(own)} positional arguments, got {len(args)}.')
    values = dict(zip([f.name for f in own], args))
    for f in own[len(args):]:
      if f.name in keys:
        values[f.name] = keys.pop(f.name)
      elif f.default is not dataclasses.MISSING:
        values[f.name] = f.default
      else:
        raise TypeError(f'Task needs {f.name!r}.')
    records = {r.name: r for r in objectives}
    for name, record in objectives_lib.OBJECTIVES.items():
      mine = {f.name: keys.pop(f.name) for f in record.keys() if f.name in keys}
      base = records.get(name) or record()
      records[name] = dataclasses.replace(base, **mine) if mine else base
    if keys:
      raise TypeError(f'Task got unknown keys {sorted(keys)}.')
    for name, value in values.items():
      object.__setattr__(self, name, value)
    object.__setattr__(self, 'objectives', tuple(
        records[n] for n in objectives_lib.OBJECTIVES if n in records))

  def __getattr__(self, name: str):
    """An objective key by its flat name (`task.caption_weight`)."""
    if name.startswith('__') or name == 'objectives':
      raise AttributeError(name)
    for record in self.__dict__.get('objectives', ()):
      if name in record.__dataclass_fields__:
        return getattr(record, name)
    raise AttributeError(f'{type(self).__name__!r} object has no attribute {name!r}')

  def objective(self, name: str) -> objectives_lib.Objective:
    """The task's record of objective `name` (its declared defaults when the task does not
    train it)."""
    for record in self.objectives:
      if record.name == name:
        return record
    raise KeyError(f'no objective {name!r}; the objectives are {list(objectives_lib.OBJECTIVES)}.')

  @property
  def active_objectives(self) -> tuple[objectives_lib.Objective, ...]:
    """The records of the objectives this task trains, in the registry's order."""
    return tuple(r for r in self.objectives if r.active)

  @property
  def resolution(self) -> Resolution:
    if len(self.resolutions) != 1:
      raise ValueError(f'task {self.name!r} has {len(self.resolutions)} resolutions; '
                       'call .signatures() to get one concrete task per resolution.')
    return self.resolutions[0]

  @property
  def signature_name(self) -> str:
    """`name@res` for a concrete task: unique key of its loader, metrics and compiled step."""
    return f'{self.name}@{self.resolution.describe()}'

  def signatures(self) -> tuple['Task', ...]:
    return tuple(dataclasses.replace(self, resolutions=(r,)) for r in self.resolutions)

  @property
  def teacher_modalities(self) -> tuple[str, ...]:
    """The modalities whose teacher embeddings a reinforced task's batches carry."""
    return tuple(m for m in self.modalities if m in ('image', 'text')) if self.reinforced else ()

  @property
  def uses_labels(self) -> bool:
    return bool(self.classify)


@dataclasses.dataclass(frozen=True)
class MixedTask:
  """The mixed baseline of the AGD ablation: every task's batch in one step, losses summed.

  Each member is a concrete task (its first resolution); the batch is `{member.name: batch}`.
  """
  members: tuple[Task, ...]
  name: str = 'mixed'

  @property
  def signature_name(self) -> str:
    return 'mixed@' + '+'.join(m.signature_name for m in self.members)

  @property
  def batch_size(self) -> int:
    return sum(m.batch_size for m in self.members)


_tuple, _pairs = objectives_lib.tuple_of, objectives_lib.pairs_of


def config_keys() -> dict:
  """The task keys every objective shares (split, weight, ...) with their config defaults;
  `config.defaults.task()` writes these and `objectives_lib.config_defaults()`."""
  return {f.name: objectives_lib.config_default(f) for f in dataclasses.fields(Task)
          if 'parse' in f.metadata}


def _resolutions(cfg) -> tuple[Resolution, ...]:
  """The cartesian product of the listed sizes, e.g. image_size=(32, 48) gives two signatures."""
  fields = [f for f, _ in modalities_lib.resolution_fields()]
  values = []
  for f in fields:
    v = cfg.get(f, None)
    values.append(_tuple(v) if isinstance(v, (list, tuple)) else ((v,) if v is not None else (None,)))
  out = [()]
  for vs in values:
    out = [o + (v,) for o in out for v in vs]
  return tuple(Resolution(*o) for o in out)


def task_from_config(name: str, cfg) -> Task:
  """Builds a `Task` from one entry of `config.tasks`; unused sizes of absent modalities drop."""
  modalities = _tuple(cfg.modalities)
  res = []
  used = {f for m in modalities if m in MODALITIES for f in modalities_lib.get(m).fields}
  for r in _resolutions(cfg):
    res.append(dataclasses.replace(r, **{f: None for f, _ in modalities_lib.resolution_fields()
                                         if f not in used}))
  shared = {f.name: f.metadata['parse'](cfg[f.name]) for f in dataclasses.fields(Task)
            if 'parse' in f.metadata and f.name in cfg}
  return Task(name=name, dataset=cfg.dataset, modalities=modalities,
              batch_size=int(cfg.batch_size), resolutions=tuple(dict.fromkeys(res)),
              objectives=tuple(r.from_config(cfg) for r in objectives_lib.OBJECTIVES.values()),
              **shared)


def tasks_from_config(config) -> list[Task]:
  """All tasks of `config.tasks`, in sorted name order (stable across runs)."""
  return [task_from_config(n, config.tasks[n]) for n in sorted(config.tasks.keys())]


def task_signatures(config) -> list[Task]:
  """Every concrete (task, resolution) the train step is compiled for."""
  return [s for t in tasks_from_config(config) for s in t.signatures()]
