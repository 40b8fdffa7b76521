"""Greedy and beam caption decoding with a CoCa model: encode the paired modality once, then
extend the caption one token at a time (the decoder is re-run over the prefix; captions are short).

Pad id 0 is the end token: once an example emits it, the rest of its caption stays 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check(model, modality: str) -> None:
  if modality not in model.spec.captions:
    raise ValueError(f'the model has no caption decoder for {modality!r}; it captions '
                     f'{model.spec.captions or "nothing"} (set caption=MODALITY on a task).')


def greedy_decode(model, modality: str, x: jax.Array, length: int) -> jax.Array:
  """`x`: raw `modality` input `[batch, ...]` -> token ids `[batch, length]` (0 after the end)."""
  _check(model, modality)
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


def beam_decode(model, modality: str, x: jax.Array, length: int, beam_size: int) -> jax.Array:
  """Beam search: keeps the `beam_size` prefixes of highest total log-probability (a finished
  beam only extends with the end token, at no cost); returns the best beam `[batch, length]`."""
  _check(model, modality)
  h, tmask, _ = model.encode_tokens(modality, x)
  decoder, b, k = model.text_decoder, x.shape[0], beam_size
  h, tmask = jnp.repeat(h, k, axis=0), jnp.repeat(tmask, k, axis=0)      # [b * k, n, ...]
  ids = jnp.zeros((b, k, length), jnp.int32)
  scores = jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf)[None].repeat(b, 0)  # [b, k]
  done = jnp.zeros((b, k), bool)

  def body(t, carry):
    ids, scores, done = carry
    logits = model.caption_logits(decoder.shift_right(ids.reshape(b * k, length)), h, tmask)
    logp = jax.nn.log_softmax(logits[:, t].astype(jnp.float32)).reshape(b, k, -1)   # [b, k, V]
    vocab = logp.shape[-1]
    ended = jnp.where(jnp.arange(vocab) == 0, 0.0, -jnp.inf)
    logp = jnp.where(done[..., None], ended, logp)
    top, idx = jax.lax.top_k((scores[..., None] + logp).reshape(b, k * vocab), k)
    beam, tok = idx // vocab, (idx % vocab).astype(jnp.int32)
    ids = jnp.take_along_axis(ids, beam[..., None], axis=1).at[:, :, t].set(tok)
    done = jnp.take_along_axis(done, beam, axis=1) | (tok == 0)
    return ids, top, done

  ids, scores, _ = jax.lax.fori_loop(0, length, body, (ids, scores, done))
  best = jnp.argmax(scores, axis=1)
  return jnp.take_along_axis(ids, best[:, None, None], axis=1)[:, 0]
