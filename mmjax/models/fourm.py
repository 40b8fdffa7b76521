"""4M: any-to-any masked modeling over discrete tokens, on the model's shared encoder.

Every modality of a `fourm` task becomes discrete tokens on device: image/audio by their frozen
FSQ tokenizer (`discrete_tokenizer.py`, weights read once from the export the config names),
text by the run's text tokenizer (its ids; positions are the real tokens plus the first padding
position, the end token). Per example, `task.input_tokens` input and `task.target_tokens` target
tokens are split over the modalities by Dirichlet shares (`fourm_masking.py`) and drawn at
random, targets among the tokens that are not inputs.

The encoder sees the input tokens only: token embedding (one table per modality) + that
modality's position and modality embeddings, gathered into `[b, input_tokens, W]`. The decoder's
queries are the target positions (a mask token + the same position and modality embeddings);
`config.model.fourm.decoder_layers` blocks of self-attention, cross-attention to the encoder
states and an MLP, then one head over every modality's vocabulary, whose logits outside the
query's own modality are masked, so the cross-entropy is over that modality's vocabulary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mmjax.core.partitioning import constrain
from mmjax.models import discrete_tokenizer as dt
from mmjax.models import objective_outputs
from mmjax.models import tokenizer_files
from mmjax.models.layers import Dense, LayerNorm, param
from mmjax.models.masked_encoding import gather_visible, run_encoder
from mmjax.models.fourm_masking import choose_tokens, split_budget
from mmjax.models.text_decoder import DecoderBlock

_NEG = -1e30
_AXES = ('batch', 'length', 'embed')


def tokenizer_path(cfg, modality: str) -> str:
  path = str(cfg.fourm.tokenizers.get(modality, '') or '')
  if not path:
    raise ValueError(f'config.model.fourm.tokenizers.{modality} names no tokenizer: pass '
                     f'--config.model.fourm.tokenizers.{modality}=DIR (python -m '
                     'tools.train_tokenizer) or start the run with python -m mmjax.train, which '
                     'trains one.')
  return path


def vocab_sizes(cfg, modalities) -> dict[str, int]:
  return {m: (int(cfg.vocab_size) if m == 'text'
              else dt.vocab_size(tokenizer_files.spec_of(tokenizer_path(cfg, m))))
          for m in modalities}


def max_tokens(cfg, modality: str) -> int:
  if modality == 'text':
    return int(cfg.max_text_length)
  return dt.num_tokens(tokenizer_files.spec_of(tokenizer_path(cfg, modality)))


class FourM(nnx.Module):
  """Token embeddings, positions, the target decoder and the joint head of a 4M model."""

  def __init__(self, cfg, modalities: tuple[str, ...], *, rngs: nnx.Rngs, dtype):
    fc, w = cfg.fourm, int(cfg.width)
    self.modalities, self.dtype = tuple(modalities), dtype
    self.tokenizers = tuple((m, tokenizer_path(cfg, m)) for m in modalities if m != 'text')
    vocab = vocab_sizes(cfg, modalities)
    self.vocab = tuple(vocab[m] for m in modalities)
    self.offsets = tuple(int(v) for v in np.concatenate([[0], np.cumsum(self.vocab)[:-1]]))
    init = nnx.initializers.normal(0.02)
    for m in modalities:
      setattr(self, f'tok_{m}', param(rngs, init, (vocab[m], w), ('vocab', 'embed')))
      setattr(self, f'pos_{m}', param(rngs, init, (max_tokens(cfg, m), w), (None, 'embed')))
      setattr(self, f'mod_{m}', param(rngs, init, (1, w), (None, 'embed')))
    self.mask_token = param(rngs, init, (1, w), (None, 'embed'))
    block = ml_collections.ConfigDict(dict(width=w, num_heads=int(cfg.num_heads),
                                           mlp_dim=int(cfg.mlp_dim)))
    self.num_layers = int(fc.decoder_layers)
    for i in range(self.num_layers):
      setattr(self, f'block_{i}', DecoderBlock(block, rngs=rngs, dtype=dtype, cross=True))
    self.norm = LayerNorm(w, rngs=rngs, dtype=dtype)
    self.head = Dense(w, int(sum(self.vocab)), ('embed', 'vocab'), rngs=rngs, dtype=jnp.float32)

  # -- tokens ---------------------------------------------------------------------------------

  def tokenizer(self, modality: str):
    """(frozen params as constants, spec) of `modality`'s tokenizer."""
    params, spec = tokenizer_files.load(dict(self.tokenizers)[modality])
    return jax.tree.map(jnp.asarray, params), spec

  def tokenize(self, batch: dict, modalities=None) -> tuple[dict, dict]:
    """`{modality: int32 ids [b, n_m]}` and `{modality: 0/1 [b, n_m]}` (1 = a real token), for
    `modalities` (default: all of the model's 4M modalities)."""
    ids, avail = {}, {}
    for m in modalities or self.modalities:
      if m == 'text':
        tm = batch['text_mask'].astype(jnp.int32)
        first_pad = jnp.concatenate([jnp.ones_like(tm[:, :1]), tm[:, :-1]], axis=1) * (1 - tm)
        ids[m], avail[m] = batch['text'].astype(jnp.int32), tm + first_pad
      else:
        params, spec = self.tokenizer(m)
        ids[m] = dt.tokenize(params, spec, batch[m])
        avail[m] = jnp.ones(ids[m].shape, jnp.int32)
    return ids, avail

  def detokenize(self, modality: str, ids: jax.Array):
    params, spec = self.tokenizer(modality)
    return dt.detokenize(params, spec, ids)

  def _positions(self, m: str, n: int) -> jax.Array:
    table = getattr(self, f'pos_{m}')
    if n > table.shape[0]:
      raise ValueError(f'{n} {m} tokens exceed the {table.shape[0]} 4M positions of {m}: raise '
                       'config.model.max_text_length or match the tokenizer\'s input size.')
    return table[:n] + getattr(self, f'mod_{m}')[...]

  # -- the model ------------------------------------------------------------------------------

  def forward(self, model, ids: dict, inputs: dict, targets: dict, in_len: int, out_len: int,
              rng=None) -> dict:
    """`ids`, `inputs`, `targets`: `{modality: [b, n_m]}` (masks 1 = input / target).

    Returns `logits [b, out_len, V]` (float32, masked to each query's modality), `targets`
    (joint ids `[b, out_len]`), `mask [b, out_len]` (1 = a real target), `modality [b, out_len]`
    (index into the task's modalities) and `order [b, N]` (which token each query is: the first
    `out_len` entries), with the encoder's aux.
    """
    mods = list(ids)
    index = {m: self.modalities.index(m) for m in mods}
    emb, pos, joint, modality = [], [], [], []
    for m in mods:
      n = ids[m].shape[1]
      p = self._positions(m, n)
      emb.append(jnp.take(getattr(self, f'tok_{m}')[...], ids[m], axis=0) + p)
      pos.append(jnp.broadcast_to(p, (ids[m].shape[0],) + p.shape))
      joint.append(ids[m] + self.offsets[index[m]])
      modality.append(jnp.full(ids[m].shape, index[m], jnp.int32))
    cat = lambda xs: jnp.concatenate(xs, axis=1)
    seq, seq_mask, _ = gather_visible(cat(emb).astype(self.dtype), cat([inputs[m] for m in mods]),
                                      in_len)
    states, aux = run_encoder(model, seq, seq_mask, None, mods[0], rng=rng)
    queries, qmask, order = gather_visible(
        (cat(pos) + self.mask_token[...]).astype(self.dtype), cat([targets[m] for m in mods]),
        out_len)
    tgt = jnp.take_along_axis(cat(joint), order[:, :out_len], axis=1)
    qmod = jnp.take_along_axis(cat(modality), order[:, :out_len], axis=1)
    b = qmask.shape[0]
    x = constrain(queries, _AXES)
    everyone = jnp.broadcast_to(qmask.astype(bool)[:, None, :], (b, out_len, out_len))
    allowed = jnp.broadcast_to(seq_mask.astype(bool)[:, None, :], (b, out_len, in_len))
    for i in range(self.num_layers):
      x = getattr(self, f'block_{i}')(x, everyone, states.astype(self.dtype), allowed)
    logits = self.head(self.norm(x).astype(jnp.float32))
    own = jnp.asarray(np.repeat(np.arange(len(self.vocab)), self.vocab))      # [V]
    logits = jnp.where(own[None, None, :] == qmod[..., None], logits, _NEG)
    return {'logits': constrain(logits, ('batch', 'length', 'vocab')), 'targets': tgt,
            'mask': qmask, 'modality': qmod, 'order': order}, aux


def fourm_outputs(model, batch: dict, task, rng) -> tuple[dict, dict]:
  """The 4M pass of a training step: tokens, budgets, inputs and targets, logits (see `forward`)
  plus `inputs`/`targets`/`available` masks per modality (for tests and metrics)."""
  rng = jax.random.key(0) if rng is None else rng
  fm = model.fourm
  mods = list(task.fourm)
  ids, avail = fm.tokenize(batch, mods)
  counts = jnp.stack([avail[m].sum(-1) for m in mods], -1)                  # [b, M]
  k_in = split_budget(jax.random.fold_in(rng, 0), counts, task.input_tokens, task.dirichlet_alpha)
  inputs = {m: choose_tokens(jax.random.fold_in(rng, 10 + i), avail[m], k_in[:, i])
            for i, m in enumerate(mods)}
  rest = {m: avail[m] * (1 - inputs[m]) for m in mods}
  k_out = split_budget(jax.random.fold_in(rng, 1), jnp.stack([rest[m].sum(-1) for m in mods], -1),
                       task.target_tokens, task.dirichlet_alpha)
  targets = {m: choose_tokens(jax.random.fold_in(rng, 20 + i), rest[m], k_out[:, i])
             for i, m in enumerate(mods)}
  out, aux = fm.forward(model, ids, inputs, targets, task.input_tokens, task.target_tokens,
                        rng=jax.random.fold_in(rng, 99))
  out.update(inputs=inputs, target_masks=targets, available=avail, ids=ids)
  return out, aux


@objective_outputs.register('fourm')
class FourMHook(objective_outputs.OutputHook):
  """Discrete input tokens -> predicted target tokens: `fourm` and `aux['fourm']`."""

  def whole_pass(self, p):
    p.extra['fourm'], p.aux['fourm'] = fourm_outputs(p.model, p.batch, p.task, p.rng)
    return p.outputs()
