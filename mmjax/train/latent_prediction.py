"""Loss of cross-modal latent prediction (models/latent_prediction.py): per `predict` pair,
`predict/<a>_<b>` = mean over the batch of `1 - cos(prediction, stop_gradient(b's embedding))`,
in [0, 2], weighed by `predict_weight`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mmjax.models.layers import l2_normalize
from mmjax.train import loss_terms


def prediction_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """`pred, target [batch, dim]` -> float32 scalar `mean(1 - cos)`; no gradient into `target`."""
  target = jax.lax.stop_gradient(l2_normalize(target))
  return jnp.mean(1.0 - jnp.sum(l2_normalize(pred) * target, axis=-1))


@loss_terms.register('latent_prediction')
class LatentPredictionTerms(loss_terms.LossTerms):

  def terms(self, model, outputs, batch, task, rng):
    return {f'predict/{name}': prediction_loss(pred, target)
            for name, (pred, target) in outputs['predictions'].items()}

  def weight(self, task, key):
    return task.predict_weight if key.startswith('predict/') else None
