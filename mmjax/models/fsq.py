"""Finite scalar quantization (FSQ): the quantizer of 4M's discrete tokenizers.

Each of the `d = len(levels)` latent channels is squashed into a bounded range and rounded to one
of `levels[i]` values; a token is the tuple of rounded values, its index the mixed-radix number
`sum_i q_i * prod(levels[:i])`, so the vocabulary is `prod(levels)` (e.g. (8, 5, 5, 5) -> 1000).

Why FSQ and not a VQ-VAE codebook: the "codebook" is a fixed grid, so no code can die (no
codebook collapse, no dead-code restarts), and there is nothing to pull towards the encoder (no
commitment or codebook loss, no EMA updates): the autoencoder trains on reconstruction alone, the
rounding passed through by a straight-through gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def vocab_size(levels) -> int:
  return int(np.prod(levels))


def _half(levels):
  lv = jnp.asarray(levels, jnp.float32)
  return lv, jnp.floor(lv / 2)   # the rounded value q lies in [-half, levels - 1 - half]


def bound(z: jax.Array, levels) -> jax.Array:
  """`z [..., d]` -> the same shape squashed so that rounding gives `levels[i]` values: channel i
  lands in (-(L-1)/2 - offset, (L-1)/2 - offset), offset 0.5 for even L (then L values round to
  -L/2 .. L/2 - 1), else 0."""
  lv, _ = _half(levels)
  half_l = (lv - 1) * (1 - 1e-3) / 2
  offset = jnp.where(lv % 2 == 0, 0.5, 0.0)
  shift = jnp.arctanh(offset / half_l)
  return jnp.tanh(z.astype(jnp.float32) + shift) * half_l - offset


def quantize(z: jax.Array, levels) -> jax.Array:
  """`z [..., d]` -> integer-valued float32 `[..., d]` (straight-through gradient)."""
  b = bound(z, levels)
  return b + jax.lax.stop_gradient(jnp.round(b) - b)


def codes_to_indices(q: jax.Array, levels) -> jax.Array:
  """Integer-valued codes `[..., d]` (as `quantize` gives) -> int32 token indices `[...]`.
  Rounds first, so it is idempotent on its own output's codes."""
  lv, half = _half(levels)
  digits = (jnp.round(q) + half).astype(jnp.int32)
  basis = jnp.asarray(np.concatenate([[1], np.cumprod(levels)[:-1]]), jnp.int32)
  return (digits * basis).sum(-1)


def indices_to_codes(idx: jax.Array, levels) -> jax.Array:
  """int token indices `[...]` -> float32 codes `[..., d]`: the inverse of `codes_to_indices`."""
  _, half = _half(levels)
  basis = jnp.asarray(np.concatenate([[1], np.cumprod(levels)[:-1]]), jnp.int32)
  lv = jnp.asarray(levels, jnp.int32)
  digits = (idx.astype(jnp.int32)[..., None] // basis) % lv
  return digits.astype(jnp.float32) - half


def scale(q: jax.Array, levels) -> jax.Array:
  """Codes -> the decoder's input, each channel divided by its half-width (about [-1, 1])."""
  _, half = _half(levels)
  return q / jnp.maximum(half, 1.0)
