"""Objectives: pure functions of model outputs and the batch, all in float32.

- `nce_loss`: symmetric InfoNCE between paired embeddings (CLIP / IMP).
- `mil_nce_loss`: MIL-NCE with several positive instances per example (VATT).
- `softmax_cross_entropy`: labelled classification.
`task_loss` sums them for one task, with MoE auxiliary losses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mmjax.core.tasks import Task
from mmjax.models.layers import l2_normalize
from mmjax.train.contrastive_variants import distillation_loss, m3col_loss  # noqa: F401 (contract names)


def nce_loss(a: jax.Array, b: jax.Array, temperature) -> jax.Array:
  """`a, b [batch, dim]` (L2-normalised here): mean of the a->b and b->a cross-entropies over
  logits `a @ b.T / temperature`, example i's positive being i."""
  a, b = l2_normalize(a), l2_normalize(b)
  logits = (a @ b.T) / jnp.asarray(temperature, jnp.float32)
  labels = jnp.arange(a.shape[0])
  a2b = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  b2a = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
  return 0.5 * (a2b + b2a)


def mil_nce_loss(a: jax.Array, b: jax.Array, temperature) -> jax.Array:
  """`a [batch, dim]`, `b [batch, instances, dim]`: every instance of example i is a positive
  of a_i. a->b: -log(sum_pos exp / sum_all exp); b->a: each instance against all a. Mean of both."""
  n, k, d = b.shape
  a, b = l2_normalize(a), l2_normalize(b.reshape(n * k, d))
  logits = (a @ b.T) / jnp.asarray(temperature, jnp.float32)        # [batch, batch * k]
  pos = (jnp.arange(n * k) // k)[None, :] == jnp.arange(n)[:, None]
  a2b = (jax.nn.logsumexp(logits, axis=1)
         - jax.nn.logsumexp(jnp.where(pos, logits, -jnp.inf), axis=1)).mean()
  b2a = optax.softmax_cross_entropy_with_integer_labels(logits.T, jnp.arange(n * k) // k).mean()
  return 0.5 * (a2b + b2a)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels.astype(jnp.int32)).mean()


def moe_aux_loss(aux: dict, config) -> tuple[jax.Array, dict]:
  """Sums the MoE layers' load-balancing and z-losses over modalities and layers, weighted."""
  moe = config.model.get('moe', None)
  lb_w = float(moe.load_balancing_weight) if moe is not None else 0.0
  z_w = float(moe.z_loss_weight) if moe is not None else 0.0
  lb = z = jnp.zeros((), jnp.float32)
  for per_layer in aux.values():
    for layer in per_layer.values():
      lb = lb + layer.get('load_balancing_loss', 0.0)
      z = z + layer.get('router_z_loss', 0.0)
  return lb_w * lb + z_w * z, {'moe_load_balancing_loss': lb, 'moe_router_z_loss': z}


def task_loss(model, outputs: dict, batch: dict, task: Task, config) -> tuple[jax.Array, dict]:
  """The task's total loss and its parts (keys `nce/<a>_<b>`, `mil_nce/..`, `xent/<m>`)."""
  parts = {}
  emb, logits = outputs['embeddings'], outputs['logits']
  for a, b in task.contrast:
    parts[f'nce/{a}_{b}'] = nce_loss(emb[a], emb[b], model.temperature(a, b))
  for a, b in task.mil_nce:
    parts[f'mil_nce/{a}_{b}'] = mil_nce_loss(emb[a], emb[b], model.temperature(a, b))
  for m in task.classify:
    parts[f'xent/{m}'] = softmax_cross_entropy(logits[m], batch['label'])
    parts[f'accuracy/{m}'] = (logits[m].argmax(-1) == batch['label']).mean()
  loss = sum(v for k, v in parts.items() if not k.startswith('accuracy/'))
  aux_loss, aux_parts = moe_aux_loss(outputs['aux'], config)
  parts.update(aux_parts)
  return loss + aux_loss, parts
