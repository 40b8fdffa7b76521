"""Greedy caption decoding with a CoCa model: encode the paired modality once, then extend the
caption one token at a time (the decoder is re-run over the prefix; captions here are short).

Pad id 0 is the end token: once an example emits it, the rest of its caption stays 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def greedy_decode(model, modality: str, x: jax.Array, length: int) -> jax.Array:
  """`x`: raw `modality` input `[batch, ...]` -> token ids `[batch, length]` (0 after the end)."""
  if modality not in model.spec.captions:
    raise ValueError(f'the model has no caption decoder for {modality!r}; it captions '
                     f'{model.spec.captions or "nothing"} (set caption=MODALITY on a task).')
  h, tmask, _ = model.encode_tokens(modality, x)
  decoder = model.text_decoder
  b = x.shape[0]
  ids = jnp.zeros((b, length), jnp.int32)
  done = jnp.zeros((b,), bool)

  def body(t, carry):
    ids, done = carry
    logits = model.caption_logits(decoder.shift_right(ids), h, tmask)     # [b, length, vocab]
    nxt = jnp.argmax(logits[:, t], axis=-1).astype(jnp.int32)
    nxt = jnp.where(done, 0, nxt)
    return ids.at[:, t].set(nxt), done | (nxt == 0)

  ids, _ = jax.lax.fori_loop(0, length, body, (ids, done))
  return ids
