"""Cross-modal latent prediction (objective `latent_prediction`, core/objectives.py): a predictor
MLP per `predict` pair (a, b) maps a's L2-normalised common-space embedding `[batch, embed_dim]`
to a prediction of b's. The loss (train/latent_prediction.py) holds b's embedding fixed, so the
predictor and a's tower move towards b, as SimSiam's predictor does across two views.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.models import objective_outputs
from mmjax.models.layers import Dense


class Predictor(nnx.Module):
  """`[batch, embed_dim]` -> Dense -> GELU -> Dense -> `[batch, embed_dim]`, float32."""

  def __init__(self, dim: int, *, rngs: nnx.Rngs):
    self.wi = Dense(dim, dim, (None, 'mlp'), rngs=rngs, dtype=jnp.float32)
    self.wo = Dense(dim, dim, ('mlp', None), rngs=rngs, dtype=jnp.float32)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.wo(jax.nn.gelu(self.wi(x.astype(jnp.float32))))


def predictor_name(a: str, b: str) -> str:
  return f'predictor_{a}_{b}'


@objective_outputs.register('latent_prediction')
class LatentPredictionHook(objective_outputs.OutputHook):
  """After each modality of a `predict` pair, its common-space embedding; after the pass,
  `predictions {'<a>_<b>': (predicted b [batch, embed_dim], b's embedding)}`."""

  def spec(self, tasks):
    pairs = set()
    for t in tasks:
      for a, b in t.predict:
        if a not in t.modalities or b not in t.modalities or a == b:
          raise ValueError(f'task {t.name!r}: predict pair {a}-{b} must name two different '
                           f'modalities of the task ({",".join(t.modalities)}).')
        if 'text' in (a, b) and t.text_instances > 1:
          raise ValueError(f'task {t.name!r}: predict pair {a}-{b} needs one text per example: '
                           'set text_instances=1.')
        pairs.add((a, b))
    return tuple(sorted(pairs)) or None

  def build(self, model, cfg, spec, *, rngs, dtype):
    for a, b in spec:
      setattr(model, predictor_name(a, b), Predictor(int(cfg.embed_dim), rngs=rngs))

  def modality_done(self, p, m, pooled, lead):
    if any(m in pair for pair in p.task.predict):
      e = p.embeddings.get(m)   # the contrastive pass's, when the task contrasts m too
      p.scratch.setdefault('latent_prediction', {})[m] = (
          e if e is not None and lead is None else p.model.project(m, pooled))

  def finish(self, p):
    emb = p.scratch['latent_prediction']
    p.extra['predictions'] = {
        f'{a}_{b}': (getattr(p.model, predictor_name(a, b))(emb[a]), emb[b])
        for a, b in p.task.predict}
