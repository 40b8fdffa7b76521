"""Objectives: pure functions of model outputs and the batch, all in float32.

- `nce_loss`: symmetric InfoNCE between paired embeddings (CLIP / IMP).
- `mil_nce_loss`: MIL-NCE with several positive instances per example (VATT); padding
  instances (an example with fewer captions) are masked out.
- `softmax_cross_entropy`: labelled classification.
`task_loss` sums, for one task, the terms of its active objectives (each objective's loss unit,
`loss_terms.py`; the contrastive, classification and fusion units are here) with MoE auxiliary
losses; `captioning_loss` and `masked_reconstruction_loss` live in `generative_objectives.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mmjax.core.tasks import Task
from mmjax.models.layers import l2_normalize
from mmjax.train import loss_terms
from mmjax.train.generative_objectives import (  # noqa: F401
    caption_targets, captioning_loss, fourm_losses, masked_reconstruction_loss)
from mmjax.train.contrastive_variants import distillation_loss, m3col_loss  # noqa: F401 (contract names)
from mmjax.train.contrastive_variants import sigmoid_loss


def nce_loss(a: jax.Array, b: jax.Array, temperature) -> jax.Array:
  """`a, b [batch, dim]` (L2-normalised here): mean of the a->b and b->a cross-entropies over
  logits `a @ b.T / temperature`, example i's positive being i."""
  a, b = l2_normalize(a), l2_normalize(b)
  logits = (a @ b.T) / jnp.asarray(temperature, jnp.float32)
  labels = jnp.arange(a.shape[0])
  a2b = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  b2a = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
  return 0.5 * (a2b + b2a)


def mil_nce_loss(a: jax.Array, b: jax.Array, temperature,
                 valid: jax.Array | None = None) -> jax.Array:
  """`a [batch, dim]`, `b [batch, instances, dim]`, `valid [batch, instances]` (bool; default all
  true): every valid instance of example i is a positive of a_i; invalid (padding) instances are
  neither positives nor negatives. a->b: -log(sum_pos exp / sum_valid exp), averaged over the
  examples with a valid instance; b->a: each valid instance against all a, averaged over valid
  instances. The loss is the mean of both directions."""
  n, k, d = b.shape
  valid = jnp.ones((n, k), bool) if valid is None else valid.astype(bool)
  a, b = l2_normalize(a), l2_normalize(b.reshape(n * k, d))
  logits = (a @ b.T) / jnp.asarray(temperature, jnp.float32)        # [batch, batch * k]
  valid = valid.reshape(n * k)
  owner = jnp.arange(n * k) // k
  pos = (owner[None, :] == jnp.arange(n)[:, None]) & valid[None, :]
  any_pos = pos.any(axis=1)
  all_valid = jax.nn.logsumexp(jnp.where(valid[None, :], logits, -jnp.inf), axis=1)
  pos_only = jax.nn.logsumexp(jnp.where(pos, logits, -jnp.inf), axis=1)
  a2b = jnp.where(any_pos, all_valid - pos_only, 0.0).sum() / jnp.maximum(any_pos.sum(), 1)
  b2a_each = optax.softmax_cross_entropy_with_integer_labels(logits.T, owner)  # [batch * k]
  b2a = jnp.where(valid, b2a_each, 0.0).sum() / jnp.maximum(valid.sum(), 1)
  return 0.5 * (a2b + b2a)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels.astype(jnp.int32)).mean()


def moe_aux_loss(aux: dict, config) -> tuple[jax.Array, dict]:
  """The MoE layers' load-balancing and z-losses, each averaged over every MoE layer the task
  ran (layers x modality passes, as MaxText averages over layers), then weighted: a task pays
  `load_balancing_weight x` (1 at balance with the 'per_slot' scale) whatever its number of
  modalities and MoE layers."""
  moe = config.model.get('moe', None)
  lb_w = float(moe.load_balancing_weight) if moe is not None else 0.0
  z_w = float(moe.z_loss_weight) if moe is not None else 0.0
  lb = z = jnp.zeros((), jnp.float32)
  layers = 0
  for per_layer in aux.values():
    for layer in per_layer.values():
      lb = lb + layer.get('load_balancing_loss', 0.0)
      z = z + layer.get('router_z_loss', 0.0)
      layers += int('load_balancing_loss' in layer or 'router_z_loss' in layer)
  lb, z = lb / max(layers, 1), z / max(layers, 1)
  return lb_w * lb + z_w * z, {'moe_load_balancing_loss': lb, 'moe_router_z_loss': z}


def _part_weight(task: Task, key: str) -> float:
  """The weight of part `key` (loss_terms.py): a caption task weighs its contrastive, captioning
  and SyCoCa parts (config weights), a reinforced task its distillation parts
  (`distill_weight`), a fusion task its auxiliary heads' cross-entropies (`aux_weight`); else 1
  (MultiMAE sums its modalities' reconstruction losses)."""
  found = loss_terms.units(task)
  for u in found:
    w = u.weight(task, key)
    if w is not None:
      return w
  scale = 1.0
  for u in found:
    scale *= u.scale(task)
  return scale


def task_loss(model, outputs: dict, batch: dict, task: Task, config, rng=None
              ) -> tuple[jax.Array, dict]:
  """The task's total loss and its parts, each active objective's terms (loss_terms.py) in the
  registry's order, keyed `<kind>/<name>` as each unit names them (e.g. `nce/image_text`,
  `xent/image`, `caption/text`); `rng` feeds the objectives that run the model again (M3CoL)."""
  parts, later = {}, {}
  for u in loss_terms.units(task):
    (later if u.second_pass else parts).update(u.terms(model, outputs, batch, task, rng))
  loss = sum(_part_weight(task, k) * v for k, v in parts.items() if not k.startswith('accuracy/'))
  aux_loss, aux_parts = moe_aux_loss(outputs['aux'], config)
  parts.update(aux_parts)
  total = loss + aux_loss
  if later:  # M3CoL: its mixed pass counts after the clean pass's loss
    total = total + sum(_part_weight(task, k) * v for k, v in later.items()
                        if not k.startswith('accuracy/'))
  return total, parts | later


@loss_terms.register('contrastive')
class ContrastiveTerms(loss_terms.LossTerms):
  """`nce/<a>_<b>` (or `sigmoid/<a>_<b>` with config.model.contrast_loss='sigmoid', SigLIP) per
  contrast pair, `mil_nce/<a>_<b>` per MIL-NCE pair, at the pair's learnt temperature."""

  def terms(self, model, outputs, batch, task, rng):
    parts, emb = {}, outputs['embeddings']
    for a, b in task.contrast:
      if getattr(model, 'contrast_loss', 'softmax') == 'sigmoid':  # SigLIP (config.model)
        parts[f'sigmoid/{a}_{b}'] = sigmoid_loss(emb[a], emb[b], model.temperature(a, b),
                                                 model.logit_bias(a, b))
      else:
        parts[f'nce/{a}_{b}'] = nce_loss(emb[a], emb[b], model.temperature(a, b))
    for a, b in task.mil_nce:
      single, multi = (b, a) if emb[a].ndim == 3 else (a, b)  # the [batch, K, dim] side (text)
      x = emb[multi] if emb[multi].ndim == 3 else emb[multi][:, None]
      valid = (batch['text_mask'].any(-1).reshape(x.shape[:2]) if multi == 'text' else None)
      parts[f'mil_nce/{a}_{b}'] = mil_nce_loss(emb[single], x, model.temperature(a, b), valid)
    return parts


@loss_terms.register('classification')
class ClassificationTerms(loss_terms.LossTerms):
  """`xent/<m>` and `accuracy/<m>` per `classify` modality against `batch['label']`."""

  def terms(self, model, outputs, batch, task, rng):
    return _xent(outputs['logits'], batch, task.classify)


@loss_terms.register('fusion')
class FusionTerms(loss_terms.LossTerms):
  """`xent/fused` of M3CoL's fused classifier; the auxiliary heads' `xent/<m>` count with
  `aux_weight`."""

  def terms(self, model, outputs, batch, task, rng):
    return _xent(outputs['logits'], batch, ('fused',))

  def weight(self, task, key):
    if key.startswith('xent/') and key != 'xent/fused':
      return task.aux_weight  # M3CoL's unimodal auxiliary heads
    return None


def _xent(logits: dict, batch: dict, names) -> dict:
  parts = {}
  for m in names:
    parts[f'xent/{m}'] = softmax_cross_entropy(logits[m], batch['label'])
    parts[f'accuracy/{m}'] = (logits[m].argmax(-1) == batch['label']).mean()
  return parts
