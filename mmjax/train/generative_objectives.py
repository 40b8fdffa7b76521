"""Generative objectives (captioning, masked reconstruction): pure functions, float32.

- `captioning_loss`: token cross-entropy averaged over the masked-in target positions (CoCa).
- `masked_reconstruction_loss`: per-patch MSE averaged over the masked patches (MAE / MultiMAE).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mmjax.train import loss_terms


def captioning_loss(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """`logits [b, L, V]`, `targets [b, L]` int, `mask [b, L]` (1 = counted) -> float32 scalar:
  the mean over masked-in positions of `-log softmax(logits)[target]` (0 when none is)."""
  xent = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), targets.astype(jnp.int32))          # [b, L]
  w = mask.astype(jnp.float32)
  return (xent * w).sum() / jnp.maximum(w.sum(), 1.0)


def masked_reconstruction_loss(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """`pred, target [b, N, P]`, `mask [b, N]` (1 = masked patch, the ones scored) -> float32
  scalar: the mean over masked patches of each patch's mean squared error over its P values."""
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)).mean(-1)  # [b, N]
  w = mask.astype(jnp.float32)
  return (err * w).sum() / jnp.maximum(w.sum(), 1.0)


END_ID = 0   # the caption's end token: the pad id (text_decoder.py, caption_decoding.py)


def caption_targets(text: jax.Array, text_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Caption tokens `[b, L]` and padding mask -> (targets, mask of scored positions): the real
  tokens and the first padding position, whose target is written as `END_ID` (whatever id the
  batch holds there)."""
  m = text_mask.astype(jnp.int32)
  first_pad = jnp.concatenate([jnp.ones_like(m[:, :1]), m[:, :-1]], axis=1) * (1 - m)
  targets = jnp.where(first_pad > 0, END_ID, text.astype(jnp.int32))
  return targets, m + first_pad


def fourm_losses(out: dict, modalities) -> dict:
  """4M: `out['logits'] [b, T, V]` (masked to each query's modality), `targets [b, T]` joint ids,
  `mask [b, T]` (1 = a real target), `modality [b, T]` -> `{'fourm/<m>': mean cross-entropy over
  m's target tokens, 'accuracy/fourm_<m>': their argmax accuracy}` (0 where m has no target)."""
  xent = optax.softmax_cross_entropy_with_integer_labels(
      out['logits'].astype(jnp.float32), out['targets'].astype(jnp.int32))      # [b, T]
  hit = (out['logits'].argmax(-1) == out['targets']).astype(jnp.float32)
  parts = {}
  for i, m in enumerate(modalities):
    w = (out['mask'] * (out['modality'] == i)).astype(jnp.float32)
    n = jnp.maximum(w.sum(), 1.0)
    parts[f'fourm/{m}'] = (xent * w).sum() / n
    parts[f'accuracy/fourm_{m}'] = (hit * w).sum() / n
  return parts


@loss_terms.register('caption')
class CaptionTerms(loss_terms.LossTerms):
  """CoCa: `caption/<m>`, weighed by `caption_weight`; every part no objective weighs itself
  counts with `contrastive_weight`."""

  def terms(self, model, outputs, batch, task, rng):
    targets, tmask = caption_targets(batch['text'], batch['text_mask'])
    return {f'caption/{task.caption}': captioning_loss(outputs['logits']['caption'], targets,
                                                       tmask)}

  def weight(self, task, key):
    return task.caption_weight if key.startswith('caption/') else None

  def scale(self, task):
    return task.contrastive_weight


@loss_terms.register('multimae')
class MultiMAETerms(loss_terms.LossTerms):
  """`mae/<m>`: the masked patches' reconstruction error per MultiMAE modality (summed)."""

  def terms(self, model, outputs, batch, task, rng):
    return {f'mae/{name}': masked_reconstruction_loss(r['pred'], r['target'], r['mask'])
            for name, r in outputs.get('reconstruction', {}).items()
            if not name.startswith('sycoca/')}


@loss_terms.register('sycoca')
class SyCoCaTerms(loss_terms.LossTerms):
  """`sycoca/<m>`: text-guided masked modeling of the captioned modality, `sycoca_weight`."""

  def terms(self, model, outputs, batch, task, rng):
    return {name: masked_reconstruction_loss(r['pred'], r['target'], r['mask'])
            for name, r in outputs.get('reconstruction', {}).items() if name.startswith('sycoca/')}

  def weight(self, task, key):
    return task.sycoca_weight if key.startswith('sycoca/') else None


@loss_terms.register('fourm')
class FourMTerms(loss_terms.LossTerms):
  """4M: `fourm/<m>` token cross-entropies and `accuracy/fourm_<m>`."""

  def terms(self, model, outputs, batch, task, rng):
    return fourm_losses(outputs['fourm'], task.fourm)
