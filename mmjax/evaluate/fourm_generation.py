"""Any-to-any generation with a trained 4M model (models/fourm.py).

The source modality's tokens are the encoder's inputs; the target modality's positions are the
decoder's queries. Text of a given length (drawn from the training captions' lengths) is decoded
by filling its positions most-confident-first, each fixed token fed back as an input, with the
end token (pad id 0) after the last as an input (`generate_text`). Image and audio tokens are
decoded MaskGIT-style (`models/maskgit.py`, cosine schedule), then turned into pixels / log-mel
by the target's tokenizer decoder.
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


def generate_text(graphdef, params, src: str, src_ids, src_avail, lengths,
                  size: int, vocab: int | None = None) -> np.ndarray:
  """Text `[b, size]` of `lengths[i]` tokens each (then the end token, pad id 0), decoded the way
  the model was trained to fill captions in: training marks a caption's real tokens plus its
  first padding position (the end token) as its tokens, so the end token at `lengths[i]` is given
  as an input, every position before it is queried together, and the most confident query is
  fixed (argmax) and fed back as an input, one per pass. (Querying one position at a time after
  a prefix, as left-to-right decoding does, looks to the model like a caption that ends there.)
  Ids at or above `vocab` (the text tokenizer's size, when the table is larger) and the end
  token are never chosen inside the caption."""
  predict = _predictor(graphdef, src, 'text')
  lengths = np.minimum(np.asarray(lengths, np.int32), size - 1)
  b = src_ids.shape[0]
  pos = np.arange(size)[None]
  ids = np.zeros((b, size), np.int32)
  known = (pos == lengths[:, None]).astype(np.int32)              # the end token, id 0
  for _ in range(int(lengths.max())):
    query = ((pos < lengths[:, None]) & (known == 0)).astype(np.int32)
    if not query.any():
      break
    logits = np.array(predict(params, src_ids, src_avail, ids, known, query), np.float32)
    if vocab is not None:
      logits = logits[..., :vocab]
    logits[..., 0] = -np.inf
    logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    best, conf = logp.argmax(-1), logp.max(-1)
    conf = np.where(query > 0, conf, -np.inf)
    j = conf.argmax(-1)                                             # most confident query
    rows = np.flatnonzero(query.any(-1))
    ids[rows, j[rows]] = best[rows, j[rows]]
    known[rows, j[rows]] = 1
  return ids * (pos < lengths[:, None])


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
