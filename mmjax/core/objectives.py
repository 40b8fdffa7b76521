"""Objectives as units: one record per objective, its task keys and their defaults declared once.

A task's objective settings are flat keys of `config.tasks.<name>` (`caption='image'`,
`sycoca_weight=1.0`); each key belongs to exactly one record below. `config.defaults.task()`
writes every record's keys with their config defaults, `core.tasks.task_from_config` parses them
back into records, and `Task` holds one record per objective (`task.objective('caption')`, or a
key by its flat name: `task.caption_weight`).

A record names the two modules that make it run, both keyed by its `name`:
- `model_module` (in `mmjax/models/`) registers what `MultimodalModel.__call__` computes for it
  (`mmjax/models/objective_outputs.py`);
- `loss_module` (in `mmjax/train/`) registers its loss terms and their weights
  (`mmjax/train/loss_terms.py`).
A new objective is a `@register` record here (or `register(...)` from elsewhere) plus those
two modules (README "Where to add ...").
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, ClassVar


def tuple_of(value) -> tuple:
  """'a,b' or ['a', 'b'] -> ('a', 'b'); None or '' -> ()."""
  if value is None:
    return ()
  if isinstance(value, str):
    return tuple(v.strip() for v in value.split(',') if v.strip())
  return tuple(value)


def pairs_of(value) -> tuple[tuple[str, str], ...]:
  """Accepts 'image-text,video-text' or [('image','text'), ...]."""
  if isinstance(value, str):
    return tuple(tuple(p.split('-')) for p in tuple_of(value))  # type: ignore[misc]
  return tuple(tuple(p) for p in tuple_of(value))  # type: ignore[misc]


def text_of(value) -> str:
  return str(value or '')


def key(default: Any, parse: Callable[[Any], Any], config: Any = None) -> Any:
  """A task key: its value in a `Task` (`default`), how a config value becomes one (`parse`),
  and what `config.defaults.task()` writes (`config`, default `default`; a callable is called)."""
  return dataclasses.field(default=default, metadata={
      'parse': parse, 'config': default if config is None else config})


def registered(table: dict, record: type['Objective'], module: str, stage: str, how: str):
  """`table[record.name]`, importing `module` (the record's `model_module` or `loss_module`, a
  module of `mmjax/<stage>/` that registers into `table`) on first use; None when nothing is
  registered and `module` is ''. `how` names the decorator that registers one."""
  if record.name not in table and module:
    if not module.startswith(f'mmjax.{stage}.'):
      raise ValueError(f'objective {record.name!r}: {module!r} must be a module of '
                       f'mmjax/{stage}/ (a stage imports no later one).')
    importlib.import_module(module)
    if record.name not in table:
      raise ValueError(f'{module} registers nothing for objective {record.name!r}: decorate '
                       f'one with {how}.')
  return table.get(record.name)


def config_default(field: dataclasses.Field) -> Any:
  value = field.metadata['config']
  return value() if callable(value) else value


@dataclasses.dataclass(frozen=True)
class Objective:
  """Base of the records: `name` keys the model-output hook and the loss terms."""
  name: ClassVar[str] = ''
  model_module: ClassVar[str] = ''   # registers the model-output hook ('' = none needed)
  loss_module: ClassVar[str] = ''    # registers the loss terms

  @property
  def active(self) -> bool:
    """Whether a task with these settings trains this objective."""
    raise NotImplementedError

  @classmethod
  def keys(cls) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(cls)

  @classmethod
  def from_config(cls, cfg) -> 'Objective':
    """The record from one `config.tasks` entry; absent keys take the declared default."""
    return cls(**{f.name: f.metadata['parse'](cfg[f.name]) for f in cls.keys() if f.name in cfg})


# Every objective, in the order their outputs are computed and their loss terms summed (the
# order of the `@register` records below).
OBJECTIVES: dict[str, type[Objective]] = {}


def register(record: type[Objective]) -> type[Objective]:
  """Adds an objective record (a frozen dataclass of `key(...)` fields); its keys must be new."""
  if not record.name or record.name in OBJECTIVES:
    raise ValueError(f'objective {record.name!r} needs a new, non-empty name.')
  taken = {f.name for r in OBJECTIVES.values() for f in r.keys()}
  clash = sorted(taken & {f.name for f in record.keys()})
  if clash:
    raise ValueError(f'objective {record.name!r} redeclares the task keys {clash}.')
  if record.active is Objective.active:
    raise ValueError(f'objective {record.name!r} needs an `active` property: when a task with '
                     'its settings trains it.')
  OBJECTIVES[record.name] = record
  return record


def unregister(name: str) -> None:
  """Removes an objective added by `register` (tests)."""
  OBJECTIVES.pop(name)


@register
@dataclasses.dataclass(frozen=True)
class Contrastive(Objective):
  """`contrast` pairs are NCE'd (or sigmoid, config.model.contrast_loss); `mil_nce` pairs use
  several text instances (VATT)."""
  name: ClassVar[str] = 'contrastive'
  model_module: ClassVar[str] = 'mmjax.models.objective_outputs'
  loss_module: ClassVar[str] = 'mmjax.train.objectives'
  contrast: tuple[tuple[str, str], ...] = key((), pairs_of, '')
  mil_nce: tuple[tuple[str, str], ...] = key((), pairs_of, '')

  @property
  def active(self) -> bool:
    return bool(self.contrast or self.mil_nce)


@register
@dataclasses.dataclass(frozen=True)
class Distillation(Objective):
  """MobileCLIP: replay stored augmentations and carry `teacher_<m> [b, teacher_dim]` embeddings
  (data/reinforced.py); the loss adds distill_weight * distillation_loss per contrast pair."""
  name: ClassVar[str] = 'distillation'
  loss_module: ClassVar[str] = 'mmjax.train.contrastive_variants'
  reinforced: bool = key(False, bool)
  distill_weight: float = key(0.0, float)
  teacher_dim: int = key(0, int)
  teacher_temperature: float = key(0.07, float)

  @property
  def active(self) -> bool:
    return self.reinforced


@register
@dataclasses.dataclass(frozen=True)
class Classification(Objective):
  """`classify` modalities get a softmax cross-entropy over `num_classes` labels."""
  name: ClassVar[str] = 'classification'
  model_module: ClassVar[str] = 'mmjax.models.objective_outputs'
  loss_module: ClassVar[str] = 'mmjax.train.objectives'
  classify: tuple[str, ...] = key((), tuple_of, '')
  num_classes: int = key(0, int)

  @property
  def active(self) -> bool:
    return bool(self.classify)


@register
@dataclasses.dataclass(frozen=True)
class Fusion(Objective):
  """M3CoL fusion classifier: `fusion` ('concat' | 'mean') classifies the fused pooled features
  of the `classify` modalities; each of them also gets its own auxiliary head, whose
  cross-entropy counts with `aux_weight` (models/fusion_heads.py)."""
  name: ClassVar[str] = 'fusion'
  model_module: ClassVar[str] = 'mmjax.models.fusion_heads'
  loss_module: ClassVar[str] = 'mmjax.train.objectives'
  fusion: str = key('', text_of)
  aux_weight: float = key(0.0, float)

  @property
  def active(self) -> bool:
    return bool(self.fusion)


@register
@dataclasses.dataclass(frozen=True)
class Caption(Objective):
  """CoCa: `caption` names the modality whose encoder tokens a text decoder captions; the loss is
  contrastive_weight * (every other part) + caption_weight * captioning cross-entropy."""
  name: ClassVar[str] = 'caption'
  model_module: ClassVar[str] = 'mmjax.models.objective_outputs'
  loss_module: ClassVar[str] = 'mmjax.train.generative_objectives'
  caption: str = key('', text_of)
  caption_weight: float = key(1.0, float)
  contrastive_weight: float = key(1.0, float)

  @property
  def active(self) -> bool:
    return bool(self.caption)


@register
@dataclasses.dataclass(frozen=True)
class MultiMAE(Objective):
  """MultiMAE: light decoders reconstruct the masked patches of these modalities; per example,
  `visible_tokens` tokens (split by Dirichlet(dirichlet_alpha) shares) reach the encoder. 4M
  splits its token budgets by the same `dirichlet_alpha`."""
  name: ClassVar[str] = 'multimae'
  model_module: ClassVar[str] = 'mmjax.models.multimae'
  loss_module: ClassVar[str] = 'mmjax.train.generative_objectives'
  multimae: tuple[str, ...] = key((), tuple_of, '')
  visible_tokens: int = key(0, int)
  dirichlet_alpha: float = key(1.0, float)

  @property
  def active(self) -> bool:
    return bool(self.multimae)


@register
@dataclasses.dataclass(frozen=True)
class SyCoCa(Objective):
  """SyCoCa (caption tasks): > 0 adds text-guided masked modeling of the captioned modality, its
  `sycoca_mask_ratio` most text-attended patches masked and reconstructed, with this weight."""
  name: ClassVar[str] = 'sycoca'
  model_module: ClassVar[str] = 'mmjax.models.sycoca'
  loss_module: ClassVar[str] = 'mmjax.train.generative_objectives'
  sycoca_weight: float = key(0.0, float)
  sycoca_mask_ratio: float = key(0.5, float)

  @property
  def active(self) -> bool:
    return self.sycoca_weight > 0


@register
@dataclasses.dataclass(frozen=True)
class FourM(Objective):
  """4M (models/fourm.py): these modalities become discrete tokens; per example `input_tokens`
  inputs and `target_tokens` targets are split over them by Dirichlet(dirichlet_alpha) shares."""
  name: ClassVar[str] = 'fourm'
  model_module: ClassVar[str] = 'mmjax.models.fourm'
  loss_module: ClassVar[str] = 'mmjax.train.generative_objectives'
  fourm: tuple[str, ...] = key((), tuple_of, '')
  input_tokens: int = key(0, int)
  target_tokens: int = key(0, int)

  @property
  def active(self) -> bool:
    return bool(self.fourm)


@register
@dataclasses.dataclass(frozen=True)
class M3CoL(Objective):
  """M3CoL (train/mixup.py): for each (mixed, other) pair, a second pass on inputs mixed within
  the batch, the mixing weight drawn from Beta(mixup_alpha, mixup_alpha)."""
  name: ClassVar[str] = 'm3col'
  loss_module: ClassVar[str] = 'mmjax.train.mixup'
  m3col: tuple[tuple[str, str], ...] = key((), pairs_of, '')
  mixup_alpha: float = key(1.0, float)

  @property
  def active(self) -> bool:
    return bool(self.m3col)


@register
@dataclasses.dataclass(frozen=True)
class LatentPrediction(Objective):
  """Cross-modal latent prediction: for each `predict` pair (a, b), a small predictor MLP maps
  a's common-space embedding to b's, scored by negative cosine against b's embedding held fixed
  (stop-gradient), as SimSiam's predictor does within one modality; `predict_weight` weighs it
  (models/latent_prediction.py, train/latent_prediction.py)."""
  name: ClassVar[str] = 'latent_prediction'
  model_module: ClassVar[str] = 'mmjax.models.latent_prediction'
  loss_module: ClassVar[str] = 'mmjax.train.latent_prediction'
  predict: tuple[tuple[str, str], ...] = key((), pairs_of, '')
  predict_weight: float = key(1.0, float)

  @property
  def active(self) -> bool:
    return bool(self.predict)


def owner(key_name: str) -> type[Objective] | None:
  """The record that declares the task key `key_name` (None: not an objective key)."""
  for record in OBJECTIVES.values():
    if any(f.name == key_name for f in record.keys()):
      return record
  return None


def config_defaults() -> dict[str, Any]:
  """Every objective key with the default `config.defaults.task()` writes."""
  return {f.name: config_default(f) for r in OBJECTIVES.values() for f in r.keys()}
