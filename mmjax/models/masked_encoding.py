"""Encoding only the visible tokens, and putting the encoder's states back in token order.

`gather_visible` moves each example's visible tokens to the front (stable, so they keep their
order) and keeps the first `length`; the encoder sees that short sequence; `scatter_back`
returns its states to the original positions (zeros where a token was not encoded).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mmjax.core.partitioning import constrain


def gather_visible(tokens: jax.Array, visible: jax.Array, length: int):
  """`tokens [b, n, W]`, `visible [b, n]` (1 = shown) -> (`[b, length, W]` tokens, their mask
  `[b, length]`, the permutation `[b, n]` that ordered them)."""
  perm = jnp.argsort(1 - visible.astype(jnp.int32), axis=1, stable=True)
  idx = perm[:, :length]
  out = jnp.take_along_axis(tokens, idx[..., None], axis=1)
  return (constrain(out, ('batch', 'length', 'embed')),
          jnp.take_along_axis(visible.astype(jnp.int32), idx, axis=1), perm)


def scatter_back(states: jax.Array, perm: jax.Array) -> jax.Array:
  """Encoder states `[b, length, W]` of `gather_visible` -> `[b, n, W]` in token order."""
  b, length, w = states.shape
  n = perm.shape[1]
  padded = jnp.concatenate([states, jnp.zeros((b, n - length, w), states.dtype)], axis=1)
  inverse = jnp.argsort(perm, axis=1)
  return constrain(jnp.take_along_axis(padded, inverse[..., None], axis=1),
                   ('batch', 'length', 'embed'))


def run_encoder(model, tokens: jax.Array, mask: jax.Array, modality_ids: jax.Array, modality: str,
                rng=None):
  """The model's encoder over `tokens [b, n, W]`: shared, one tower (`modality`'s) or the
  Mixture-of-Transformers (per-token `modality_ids [b, n]`). Returns `(states, aux)`."""
  if model.mot:
    return model.encoder(tokens, mask, modality_ids, rng=rng)
  encoder = model.encoder if model.shared else getattr(model, f'encoder_{modality}')
  return encoder(tokens, mask, rng=rng)
