"""M3CoL's fusion classifier: one head over the fused pooled features of a task's `classify`
modalities, plus an auxiliary head per modality on its own pooled features.

Fusion of pooled features `[batch, width]` per modality (in `task.classify` order): 'concat'
gives `[batch, n * width]`, 'mean' gives `[batch, width]`. Logits: `fused` from the fusion head,
and one `[batch, classes]` per modality from its auxiliary head, all float32. Heads are named
after the dataset (`head_<dataset>_fused`, `head_<dataset>_<modality>`), so tasks on one dataset
share them.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp

from mmjax.core.tasks import Task
from mmjax.models import objective_outputs

FUSIONS = ('concat', 'mean')
FUSED = 'fused'


def _base(task: Task) -> str:
  return 'head_' + re.sub(r'[^0-9a-zA-Z]+', '_', task.dataset).strip('_')


def fused_name(task: Task) -> str:
  return f'{_base(task)}_{FUSED}'


def aux_name(task: Task, modality: str) -> str:
  return f'{_base(task)}_{modality}'


def heads(task: Task) -> tuple[tuple[str, int, int], ...]:
  """`(name, fan-in in multiples of the width, classes)` of a fusion task's heads."""
  if not task.fusion:
    return ()
  fan_in = len(task.classify) if task.fusion == 'concat' else 1
  return ((fused_name(task), fan_in, task.num_classes),) + tuple(
      (aux_name(task, m), 1, task.num_classes) for m in task.classify)


def check_task(task: Task) -> None:
  """Raises ValueError (one sentence) for a fusion task the model cannot build."""
  if not task.fusion:
    return
  if task.fusion not in FUSIONS:
    raise ValueError(f'task {task.name!r}: fusion={task.fusion!r} is not one of '
                     f'{", ".join(FUSIONS)}.')
  if len(task.classify) < 2:
    raise ValueError(f'task {task.name!r} fuses {len(task.classify)} modality: list two or more '
                     'in classify (e.g. classify=image,audio).')
  if task.aux_weight < 0:
    raise ValueError(f'task {task.name!r}: aux_weight must be >= 0, got {task.aux_weight}.')


def fuse(pooled: list[jax.Array], how: str) -> jax.Array:
  """Per-modality `[batch, width]` -> `[batch, n * width]` ('concat') or `[batch, width]`."""
  if how == 'concat':
    return jnp.concatenate(pooled, axis=-1)
  return jnp.mean(jnp.stack(pooled), axis=0)


def logits(model, task: Task, pooled: dict) -> dict:
  """`{'fused': [batch, classes], <modality>: [batch, classes]}` float32 from the model's heads;
  `pooled` maps each `classify` modality to its pooled features."""
  out = {m: getattr(model, aux_name(task, m))(pooled[m]).astype(jnp.float32)
         for m in task.classify}
  fused = fuse([pooled[m].astype(jnp.float32) for m in task.classify], task.fusion)
  out[FUSED] = getattr(model, fused_name(task))(fused).astype(jnp.float32)
  return out


@objective_outputs.register('fusion')
class FusionHook(objective_outputs.OutputHook):
  """Collects the pooled features of the `classify` modalities; after the pass, the fused and
  auxiliary heads' logits (`fused`, `<modality>`)."""

  def modality_done(self, p, m, pooled, lead):
    if m in p.task.classify:
      p.scratch.setdefault('fusion', {})[m] = pooled

  def finish(self, p):
    p.logits.update(logits(p.model, p.task, p.scratch.get('fusion', {})))
