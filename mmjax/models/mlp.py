"""The dense Transformer MLP: `[batch, length, embed]` -> same, through `[.., mlp]` hidden units."""

from __future__ import annotations

import jax
from flax import nnx

from mmjax.core.partitioning import constrain
from mmjax.models.layers import Dense


class Mlp(nnx.Module):
  """Dense -> GELU -> Dense. Returns `(y, aux)` like the MoE layer; `aux` is empty here. `act`
  replaces the (tanh-approximated) GELU, e.g. by `towers.activation(config.model)`."""

  def __init__(self, width: int, mlp_dim: int, *, rngs: nnx.Rngs, dtype, act=None):
    self.wi = Dense(width, mlp_dim, ('embed', 'mlp'), rngs=rngs, dtype=dtype)
    self.wo = Dense(mlp_dim, width, ('mlp', 'embed'), rngs=rngs, dtype=dtype)
    self.act = act or jax.nn.gelu

  def __call__(self, x: jax.Array, mask: jax.Array | None = None):
    h = self.act(self.wi(x))
    h = constrain(h, ('batch', 'length', 'mlp'))
    return self.wo(h), {}
