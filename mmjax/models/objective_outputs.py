"""What the model computes for each objective: hooks into `MultimodalModel.__call__`.

`MultimodalModel.__call__` runs one pass over the task's modalities and asks the hooks of the
task's active objectives (`core/objectives.py`, keyed by the record's `name`) at four points:

- `whole_pass(p)`: an objective that replaces the per-modality pass (MultiMAE, 4M) returns the
  outputs itself;
- `encode(p, m, x, mask, rng)`: an objective that needs modality `m`'s encoder tokens (CoCa,
  SyCoCa's text guide) encodes it and returns `(pooled [batch, width], aux)`;
- `modality_done(p, m, pooled, lead)`: after each modality (contrastive projections, classifier
  logits);
- `finish(p)`: after all modalities (fusion heads, SyCoCa's masked modeling).

A hook registers with `@register(name)` in the module its record names as `model_module`; that
module is imported the first time a task needs the hook. A hook may also own parameters:
`spec(tasks)` says what it needs of the model (hashable; None = nothing) and `build(...)` adds
the submodules to the model. Contrastive, classification and CoCa captioning live here.
"""

from __future__ import annotations

import dataclasses

import jax

from mmjax.core import objectives as objectives_lib

HOOKS: dict[str, 'OutputHook'] = {}


@dataclasses.dataclass
class Pass:
  """One `MultimodalModel.__call__`: its inputs and the outputs the hooks fill in."""
  model: object
  batch: dict
  task: object
  rng: jax.Array | None
  train: bool
  embeddings: dict = dataclasses.field(default_factory=dict)  # {modality: [batch, embed_dim]}
  logits: dict = dataclasses.field(default_factory=dict)      # {name: float32 logits}
  aux: dict = dataclasses.field(default_factory=dict)         # {modality or objective: aux}
  extra: dict = dataclasses.field(default_factory=dict)       # further output keys
  scratch: dict = dataclasses.field(default_factory=dict)     # what one hook leaves another

  @property
  def drop_rate(self) -> float:
    return self.task.drop_token if self.train else 0.0

  def outputs(self) -> dict:
    return {'embeddings': self.embeddings, 'logits': self.logits, 'aux': self.aux, **self.extra}


class OutputHook:
  """The model side of one objective; every method is optional."""
  separate_modalities = False  # True: Mixture-of-Transformers never fuses the task's modalities

  def whole_pass(self, p: Pass) -> dict | None:
    return None

  def encode(self, p: Pass, m: str, x: jax.Array, mask, rng):
    return None

  def modality_done(self, p: Pass, m: str, pooled: jax.Array, lead) -> None:
    pass

  def finish(self, p: Pass) -> None:
    pass

  def spec(self, tasks) -> object | None:
    """What this objective needs of the model over all `tasks` (hashable; None: nothing)."""
    return None

  def build(self, model, cfg, spec, *, rngs, dtype) -> None:
    """Adds this objective's submodules to `model` (`cfg` = config.model)."""


def register(name: str):
  """Class decorator: the model-output hook of objective `name`."""
  def add(cls):
    HOOKS[name] = cls()
    return cls
  return add


def hook(record: type[objectives_lib.Objective]) -> OutputHook | None:
  """The hook of an objective record, importing its `model_module` on first use."""
  return objectives_lib.registered(HOOKS, record, record.model_module, 'models',
                                   '@objective_outputs.register')


def hooks(task) -> list[OutputHook]:
  """The hooks of the task's active objectives, in the registry's order."""
  found = [hook(type(r)) for r in task.active_objectives]
  return [h for h in found if h is not None]


def all_hooks() -> dict[str, OutputHook]:
  """Every registered objective's hook (imports their modules)."""
  found = {n: hook(r) for n, r in objectives_lib.OBJECTIVES.items()}
  return {n: h for n, h in found.items() if h is not None}


@register('contrastive')
class Contrastive(OutputHook):
  """Contrast and MIL-NCE pairs: L2-normalised common-space embeddings of their modalities
  (text with several instances keeps them: `[batch, instances, embed_dim]`)."""
  separate_modalities = True   # joint attention would let each example see its positive

  def modality_done(self, p, m, pooled, lead):
    if any(m in pair for pair in p.task.contrast + p.task.mil_nce):
      e = p.model.project(m, pooled)
      p.embeddings[m] = e.reshape(*lead, e.shape[-1]) if lead is not None else e


@register('classification')
class Classification(OutputHook):
  """Per `classify` modality, the dataset's classifier head on the pooled features (a fusion
  task's heads are the fusion objective's, models/fusion_heads.py)."""

  def modality_done(self, p, m, pooled, lead):
    if m in p.task.classify and not p.task.fusion:
      p.logits[m] = p.model.classify(p.task, pooled)


@register('caption')
class Caption(OutputHook):
  """CoCa: the captioned modality is attention-pooled, and the text decoder reads its encoder
  tokens: `logits['caption'] [batch, length, vocab]` (teacher forcing on `batch['text']`)."""

  def encode(self, p, m, x, mask, rng):
    if m != p.task.caption:
      return None
    model = p.model
    h, tmask, aux = model.encode_tokens(m, x, mask, rng=rng, drop_rate=p.drop_rate)
    pooled = model.pool_tokens(m, h, tmask)
    targets = p.batch['text']
    p.logits['caption'] = model.caption_logits(model.text_decoder.shift_right(targets), h, tmask)
    p.scratch['caption'] = (x, h)   # SyCoCa masks the captioned inputs its text attends to
    return pooled, aux
