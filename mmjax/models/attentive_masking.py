"""SyCoCa's attentive masking: the caption chooses which patches to hide.

The caption's attention over the patches is the softmax over patches of the similarity between
its pooled, projected text embedding and each patch token projected into the same common space;
the `num_masked` most-attended patches (largest similarity; the softmax keeps the order) are
masked, so the image decoder must rebuild what the text points at.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def text_patch_attention(patch_emb: jax.Array, text_emb: jax.Array) -> jax.Array:
  """`patch_emb [b, n, D]`, `text_emb [b, D]` (both L2-normalised) -> float32 attention of each
  caption over its example's patches `[b, n]` (rows sum to 1), without gradient."""
  sim = jnp.einsum('bnd,bd->bn', patch_emb.astype(jnp.float32), text_emb.astype(jnp.float32))
  return jax.lax.stop_gradient(jax.nn.softmax(sim, axis=-1))


def attentive_mask(scores: jax.Array, num_masked: int) -> jax.Array:
  """`scores [b, n]` -> int32 `[b, n]` with 1 at each row's `num_masked` highest scores (the
  patches to mask and reconstruct), 0 elsewhere; ties go to the earlier patch."""
  if not 0 <= num_masked <= scores.shape[1]:
    raise ValueError(f'cannot mask {num_masked} of {scores.shape[1]} patches.')
  order = jnp.argsort(-scores, axis=1, stable=True)
  rank = jnp.argsort(order, axis=1)
  return (rank < num_masked).astype(jnp.int32)
