"""Contrastive variants beyond symmetric InfoNCE, all in float32.

- `m3col_loss`: M3CoL's mixed-sample alignment — a sample mixed within one modality from
  examples `i` and `perm[i]` is aligned with both sources' partners in the other modality, with
  soft targets `lam[i]` and `1 - lam[i]`.
- `distillation_loss`: MobileCLIP-style distillation of a teacher's pairwise similarities into a
  student's, as row-wise KL in both directions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mmjax.models.layers import l2_normalize
from mmjax.train import loss_terms


def _f32(x):
  return jnp.asarray(x, jnp.float32)


def m3col_loss(mixed: jax.Array, other: jax.Array, perm: jax.Array, lam: jax.Array,
               temperature) -> jax.Array:
  """`mixed, other [batch, dim]`, `perm [batch]` int, `lam [batch]` -> scalar.

  With `p(j | i) = softmax_j(cos(mixed_i, other_j) / temperature)`, the mean over `i` of
  `-(lam_i * log p(i | i) + (1 - lam_i) * log p(perm_i | i))`.
  """
  a, b = l2_normalize(_f32(mixed)), l2_normalize(_f32(other))
  logp = jax.nn.log_softmax((a @ b.T) / _f32(temperature), axis=-1)   # [batch, batch]
  rows = jnp.arange(a.shape[0])
  lam = _f32(lam)
  own = logp[rows, rows]
  partner = logp[rows, perm.astype(jnp.int32)]
  return -(lam * own + (1.0 - lam) * partner).mean()


def _row_kl(teacher_logits: jax.Array, student_logits: jax.Array) -> jax.Array:
  """Mean over rows of `KL(softmax(teacher) || softmax(student))`, `[rows, cols]` each."""
  log_t = jax.nn.log_softmax(teacher_logits, axis=-1)
  log_s = jax.nn.log_softmax(student_logits, axis=-1)
  return (jnp.exp(log_t) * (log_t - log_s)).sum(-1).mean()


def distillation_loss(student_a: jax.Array, student_b: jax.Array, teacher_a: jax.Array,
                      teacher_b: jax.Array, student_temperature,
                      teacher_temperature) -> jax.Array:
  """Student `[batch, d_s]` and teacher `[batch, d_t]` embeddings of two modalities -> scalar.

  `S = norm(student_a) @ norm(student_b).T / student_temperature`, `T` likewise from the
  teacher; the average of the mean row-wise `KL(softmax(T) || softmax(S))` over the a->b
  matrices and over the b->a (transposed) matrices. The teacher gets no gradient.
  """
  s = (l2_normalize(_f32(student_a)) @ l2_normalize(_f32(student_b)).T
       / _f32(student_temperature))
  t = jax.lax.stop_gradient(l2_normalize(_f32(teacher_a)) @ l2_normalize(_f32(teacher_b)).T
                            / _f32(teacher_temperature))
  return 0.5 * (_row_kl(t, s) + _row_kl(t.T, s.T))


def sigmoid_loss(a: jax.Array, b: jax.Array, temperature, bias) -> jax.Array:
  """SigLIP's pairwise sigmoid loss: `a, b [batch, dim]` (L2-normalised here), logits
  `a @ b.T / temperature + bias`, label +1 on the diagonal and -1 elsewhere; the sum of
  `-log sigmoid(label * logit)` over all pairs, divided by the batch size."""
  a, b = l2_normalize(_f32(a)), l2_normalize(_f32(b))
  logits = (a @ b.T) / _f32(temperature) + _f32(bias)
  labels = 2.0 * jnp.eye(a.shape[0], dtype=jnp.float32) - 1.0
  return -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / a.shape[0]


@loss_terms.register('distillation')
class DistillationTerms(loss_terms.LossTerms):
  """MobileCLIP: `distill/<a>_<b>` per contrast pair whose both modalities carry teacher
  embeddings (`batch['teacher_<m>']`), weighed by `distill_weight`."""

  def terms(self, model, outputs, batch, task, rng):
    emb, parts = outputs['embeddings'], {}
    for a, b in task.contrast:
      if a in task.teacher_modalities and b in task.teacher_modalities:
        parts[f'distill/{a}_{b}'] = distillation_loss(
            emb[a], emb[b], batch[f'teacher_{a}'], batch[f'teacher_{b}'], model.temperature(a, b),
            task.teacher_temperature)
    return parts

  def weight(self, task, key):
    return task.distill_weight if key.startswith('distill/') else None
