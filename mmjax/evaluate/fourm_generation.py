"""Any-to-any generation with a trained 4M model (models/fourm.py).

The source modality's tokens are the encoder's inputs; the target modality's positions are the
decoder's queries. Text is decoded autoregressively: position t is the argmax given the source
and the text decoded so far (fed back as input tokens), until the end token (pad id 0). Image
and audio tokens are decoded MaskGIT-style (`models/maskgit.py`, cosine schedule), then turned
into pixels / log-mel by the target's tokenizer decoder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.models import maskgit
from mmjax.train import state as state_lib


_JITTED: dict = {}  # (id(graphdef), kind, ...) -> jitted function (graphdefs are not hashable)


def _cached(key, make):
  if key not in _JITTED:
    _JITTED[key] = make()
  return _JITTED[key]


def _tokenizer_fn(graphdef, modality: str):
  return _cached((id(graphdef), 'tokenize', modality), lambda: jax.jit(_tokenize(graphdef, modality)))


def _tokenize(graphdef, modality: str):
  def run(params, batch):
    ids, avail = state_lib.merge(graphdef, params).fourm.tokenize(batch, (modality,))
    return ids[modality], avail[modality]
  return run


def source_tokens(graphdef, params, modality: str, batch: dict) -> tuple[jax.Array, jax.Array]:
  """A modality's token ids `[b, n]` and which are real `[b, n]`, as the train step makes them."""
  keys = ('text', 'text_mask') if modality == 'text' else (modality,)
  return _tokenizer_fn(graphdef, modality)(params, {k: jnp.asarray(batch[k]) for k in keys})


def target_size(model, modality: str, text_length: int) -> int:
  return text_length if modality == 'text' else int(np.prod(model.fourm.tokenizer(modality)[1]['grid']))


def target_logits(model, src: str, src_ids, src_avail, tgt: str, tgt_ids, tgt_known,
                  tgt_query) -> jax.Array:
  """Logits over `tgt`'s vocabulary `[b, n_tgt, V_tgt]` at the positions `tgt_query` marks (zero
  elsewhere), given the source tokens and the target tokens known so far (both encoder inputs).
  As in training, only tokens that are not inputs are queried, and the queries attend to each
  other, so the query set is part of the condition."""
  fm = model.fourm
  b, n_src, n_tgt = src_ids.shape[0], src_ids.shape[1], tgt_ids.shape[1]
  out, _ = fm.forward(model, {src: src_ids, tgt: tgt_ids}, {src: src_avail, tgt: tgt_known},
                      {src: jnp.zeros_like(src_avail), tgt: tgt_query}, n_src + n_tgt, n_tgt)
  i = fm.modalities.index(tgt)
  off, v = fm.offsets[i], fm.vocab[i]
  logits = out['logits'][..., off:off + v]                              # queried positions first
  pos = jnp.where(out['mask'] > 0, out['order'][:, :n_tgt] - n_src, n_tgt)
  full = jnp.zeros((b, n_tgt + 1, v), logits.dtype)
  return full.at[jnp.arange(b)[:, None], pos].set(logits)[:, :n_tgt]


def _predictor(graphdef, src: str, tgt: str):
  return _cached((id(graphdef), 'predict', src, tgt), lambda: jax.jit(_predict(graphdef, src, tgt)))


def _predict(graphdef, src: str, tgt: str):
  def run(params, src_ids, src_avail, tgt_ids, tgt_known, tgt_query):
    model = state_lib.merge(graphdef, params)
    return target_logits(model, src, src_ids, src_avail, tgt, tgt_ids, tgt_known, tgt_query)
  return run


def generate_text(graphdef, params, src: str, src_ids, src_avail, length: int,
                  vocab: int | None = None) -> np.ndarray:
  """Autoregressive text `[b, length]` (0 after the end token); ids at or above `vocab` (the
  text tokenizer's size, when the model's table is larger) are never chosen."""
  predict = _predictor(graphdef, src, 'text')
  b = src_ids.shape[0]
  ids, known = np.zeros((b, length), np.int32), np.zeros((b, length), np.int32)
  done = np.zeros((b,), bool)
  for t in range(length):
    query = np.zeros((b, length), np.int32)
    query[:, t] = 1                                 # one query: the next position
    logits = np.asarray(predict(params, src_ids, src_avail, ids, known, query))
    if vocab is not None:
      logits = logits[..., :vocab]
    nxt = np.where(done, 0, logits[:, t].argmax(-1)).astype(np.int32)
    ids[:, t], known[:, t] = nxt, 1
    done |= nxt == 0
  return ids


def generate_tokens(graphdef, params, src: str, src_ids, src_avail, tgt: str, n: int, steps: int,
                    rng, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
  """MaskGIT decoding of `tgt`'s `n` tokens -> (ids `[b, n]`, known counts per step)."""
  predict = _predictor(graphdef, src, tgt)
  fn = lambda ids, known: predict(params, src_ids, src_avail, ids, known, 1 - known)
  ids, history = maskgit.decode(fn, src_ids.shape[0], n, steps, rng, temperature=temperature)
  return np.asarray(ids), history


def token_accuracy(graphdef, params, src: str, src_ids, src_avail, tgt: str, tgt_ids,
                   tgt_avail) -> float:
  """Share of `tgt`'s real tokens whose one-pass argmax (nothing of `tgt` known) is right."""
  logits = _predictor(graphdef, src, tgt)(params, src_ids, src_avail, jnp.zeros_like(tgt_ids),
                                          jnp.zeros_like(tgt_avail), tgt_avail)
  hit = (np.asarray(logits).argmax(-1) == np.asarray(tgt_ids)) * np.asarray(tgt_avail)
  return float(hit.sum() / max(np.asarray(tgt_avail).sum(), 1))
