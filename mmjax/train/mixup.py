"""M3CoL mixup inside the train step: mix samples within one modality, align with both partners.

For a task pair `(a, b)` in `task.m3col`, each example `i` of modality `a` is mixed with example
`perm[i]` (a random permutation of the batch) with weight `lam[i] ~ Beta(alpha, alpha)` on the raw
input; the mixed batch goes through the model and `m3col_loss` aligns it with the clean `b`
embeddings of `i` (target `lam[i]`) and `perm[i]` (target `1 - lam[i]`). Only continuous inputs
(image, video, audio) mix; the pair must also be a contrast pair (its temperature is shared).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mmjax.core.tasks import Task
from mmjax.models import fusion_heads
from mmjax.models.embeddings import normalize_input
from mmjax.train.contrastive_variants import m3col_loss
from mmjax.train import loss_terms

MIXABLE = ('image', 'video', 'audio')


def mixup(rng, x: jax.Array, alpha: float):
  """`x [batch, ...]` -> (mixed `[batch, ...]` float32, perm `[batch]` int32, lam `[batch]`),
  `mixed[i] = lam[i] * x[i] + (1 - lam[i]) * x[perm[i]]`, `lam ~ Beta(alpha, alpha)`."""
  k_lam, k_perm = jax.random.split(rng)
  n = x.shape[0]
  lam = jax.random.beta(k_lam, alpha, alpha, (n,), jnp.float32)
  perm = jax.random.permutation(k_perm, n).astype(jnp.int32)
  x = x.astype(jnp.float32)
  w = lam.reshape((n,) + (1,) * (x.ndim - 1))
  return w * x + (1.0 - w) * x[perm], perm, lam


def check_task(task: Task) -> None:
  """Raises ValueError (one sentence) for an M3CoL pair or fusion classifier the step cannot
  run."""
  fusion_heads.check_task(task)
  for a, b in task.m3col:
    if a not in MIXABLE:
      raise ValueError(f'task {task.name!r}: m3col pair {a}-{b} mixes {a!r}, but only '
                       f'{", ".join(MIXABLE)} inputs can be mixed: put that modality first.')
    if (a, b) not in task.contrast and (b, a) not in task.contrast:
      raise ValueError(f'task {task.name!r}: m3col pair {a}-{b} is not one of its contrast pairs '
                       f'{task.contrast}: add contrast={a}-{b} (M3CoL shares its temperature).')
    if task.mixup_alpha <= 0:
      raise ValueError(f'task {task.name!r}: mixup_alpha must be > 0, got {task.mixup_alpha}.')


def m3col_losses(model, outputs: dict, batch: dict, task: Task, rng, train: bool = True) -> dict:
  """`{'m3col/<a>_<b>': scalar}` for the task's M3CoL pairs, `outputs` being the clean pass."""
  parts = {}
  for i, (a, b) in enumerate(task.m3col):
    k_mix, k_enc = jax.random.split(jax.random.fold_in(rng, i))
    # Mixed in the normalised space (float inputs are taken as normalised by the model).
    mixed, perm, lam = mixup(k_mix, normalize_input(a, batch[a]), task.mixup_alpha)
    pooled, _ = model.encode(a, mixed, None, rng=k_enc,
                             drop_rate=task.drop_token if train else 0.0)
    parts[f'm3col/{a}_{b}'] = m3col_loss(model.project(a, pooled), outputs['embeddings'][b],
                                         perm, lam, model.temperature(a, b))
  return parts


@loss_terms.register('m3col')
class M3CoLTerms(loss_terms.LossTerms):
  """`m3col/<a>_<b>` from a second pass on mixed inputs, added unweighted after the task's loss
  (`rng`: the step's; the mixing draws fold in 7919)."""
  second_pass = True

  def terms(self, model, outputs, batch, task, rng):
    if rng is None:
      raise ValueError(f'task {task.name!r} trains M3CoL, whose mixing needs an rng: pass '
                       'task_loss(..., rng=...).')
    return m3col_losses(model, outputs, batch, task, jax.random.fold_in(rng, 7919))

  def weight(self, task, key):
    return 1.0 if key.startswith('m3col/') else None
