"""Tasks: one dataset + modalities + objective + batch size + resolution — what a step is about.

A `Task` is frozen and hashable: it is the static argument of the train step. A task may list
several resolutions; `Task.signatures()` gives one concrete task per resolution, and the step is
compiled once per concrete task. No loader code here: the loaders and the AGD sampler that picks
each step's task live in `mmjax/data/`.
"""

from __future__ import annotations

import dataclasses

from mmjax.core import modalities as modalities_lib

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


@dataclasses.dataclass(frozen=True)
class Task:
  """One training task; `contrast` pairs are NCE'd, `mil_nce` pairs use several text instances,
  `classify` modalities get a softmax cross-entropy over `num_classes` labels."""
  name: str
  dataset: str
  split: str
  modalities: tuple[str, ...]
  batch_size: int
  resolutions: tuple[Resolution, ...]
  contrast: tuple[tuple[str, str], ...] = ()
  mil_nce: tuple[tuple[str, str], ...] = ()
  classify: tuple[str, ...] = ()
  num_classes: int = 0
  weight: float = 1.0
  interval: int = 1
  feature_map: tuple[tuple[str, str], ...] = ()  # (dataset feature, mmjax modality or 'label')
  drop_token: float = 0.0
  text_instances: int = 1  # > 1: text is [batch, instances, length] (MIL-NCE positives)
  # CoCa: `caption` names the modality whose encoder tokens a text decoder captions; the loss is
  # contrastive_weight * (NCE terms) + caption_weight * captioning cross-entropy.
  caption: str = ''
  caption_weight: float = 1.0
  contrastive_weight: float = 1.0
  m3col: tuple[tuple[str, str], ...] = ()  # (mixed, other): M3CoL mixup pairs (train/mixup.py)
  mixup_alpha: float = 1.0  # the mixing weight's Beta(alpha, alpha)
  # MultiMAE: light decoders reconstruct the masked patches of these modalities; per example,
  # `visible_tokens` tokens (split by Dirichlet(dirichlet_alpha) shares) reach the encoder.
  multimae: tuple[str, ...] = ()
  visible_tokens: int = 0
  dirichlet_alpha: float = 1.0
  # SyCoCa (caption tasks): > 0 adds text-guided masked modeling of the captioned modality, its
  # `sycoca_mask_ratio` most text-attended patches masked and reconstructed, with this weight.
  sycoca_weight: float = 0.0
  sycoca_mask_ratio: float = 0.5
  # MobileCLIP: replay stored augmentations and carry `teacher_<m> [b, teacher_dim]` embeddings
  # (data/reinforced.py); the loss adds distill_weight * distillation_loss per contrast pair.
  reinforced: bool = False
  distill_weight: float = 0.0
  teacher_dim: int = 0
  teacher_temperature: float = 0.07
  # M3CoL fusion classifier: `fusion` ('concat' | 'mean') classifies the fused pooled features
  # of the `classify` modalities; each of them also gets its own auxiliary head, whose
  # cross-entropy counts with `aux_weight` (models/fusion_heads.py).
  fusion: str = ''
  aux_weight: float = 0.0
  # 4M (models/fourm.py): these modalities become discrete tokens; per example `input_tokens`
  # inputs and `target_tokens` targets are split over them by Dirichlet(dirichlet_alpha) shares.
  fourm: tuple[str, ...] = ()
  input_tokens: int = 0
  target_tokens: int = 0

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


def _tuple(value) -> tuple:
  if value is None:
    return ()
  if isinstance(value, str):
    return tuple(v.strip() for v in value.split(',') if v.strip())
  return tuple(value)


def _pairs(value) -> tuple[tuple[str, str], ...]:
  """Accepts 'image-text,video-text' or [('image','text'), ...]."""
  if isinstance(value, str):
    return tuple(tuple(p.split('-')) for p in _tuple(value))  # type: ignore[misc]
  return tuple(tuple(p) for p in _tuple(value))  # type: ignore[misc]


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
  return Task(
      name=name, dataset=cfg.dataset, split=cfg.get('split', 'train'), modalities=modalities,
      batch_size=int(cfg.batch_size), resolutions=tuple(dict.fromkeys(res)),
      contrast=_pairs(cfg.get('contrast', ())), mil_nce=_pairs(cfg.get('mil_nce', ())),
      classify=_tuple(cfg.get('classify', ())), num_classes=int(cfg.get('num_classes', 0)),
      weight=float(cfg.get('weight', 1.0)), interval=int(cfg.get('interval', 1)),
      feature_map=tuple(sorted(dict(cfg.get('feature_map', {}) or {}).items())),
      drop_token=float(cfg.get('drop_token', 0.0)),
      text_instances=int(cfg.get('text_instances', 1)),
      caption=str(cfg.get('caption', '') or ''),
      caption_weight=float(cfg.get('caption_weight', 1.0)),
      contrastive_weight=float(cfg.get('contrastive_weight', 1.0)),
      m3col=_pairs(cfg.get('m3col', ())), mixup_alpha=float(cfg.get('mixup_alpha', 1.0)),
      multimae=_tuple(cfg.get('multimae', ())), visible_tokens=int(cfg.get('visible_tokens', 0)),
      dirichlet_alpha=float(cfg.get('dirichlet_alpha', 1.0)),
      sycoca_weight=float(cfg.get('sycoca_weight', 0.0)),
      sycoca_mask_ratio=float(cfg.get('sycoca_mask_ratio', 0.5)),
      reinforced=bool(cfg.get('reinforced', False)),
      distill_weight=float(cfg.get('distill_weight', 0.0)),
      teacher_dim=int(cfg.get('teacher_dim', 0)),
      teacher_temperature=float(cfg.get('teacher_temperature', 0.07)),
      fusion=str(cfg.get('fusion', '') or ''), aux_weight=float(cfg.get('aux_weight', 0.0)),
      fourm=_tuple(cfg.get('fourm', ())), input_tokens=int(cfg.get('input_tokens', 0)),
      target_tokens=int(cfg.get('target_tokens', 0)))


def tasks_from_config(config) -> list[Task]:
  """All tasks of `config.tasks`, in sorted name order (stable across runs)."""
  return [task_from_config(n, config.tasks[n]) for n in sorted(config.tasks.keys())]


def task_signatures(config) -> list[Task]:
  """Every concrete (task, resolution) the train step is compiled for."""
  return [s for t in tasks_from_config(config) for s in t.signatures()]
