"""CoCa's text decoder: causal unimodal layers, then multimodal layers that cross-attend to the
encoder's tokens of the paired modality; and the attention pooler for the contrastive embedding.

Ids: the decoder reads `[BOS, t_0, .., t_{L-2}]` and predicts `[t_0, .., t_{L-1}]`; BOS is an
extra embedding row (`vocab_size`), so the tokenizer's ids are untouched. Pad id 0 doubles as
the end token: the first padding position is a target, so greedy decoding learns to stop.
Attention here is plain XLA (GSPMD-partitioned), scores and softmax in float32 (also under a
bfloat16 model: the CoCa decoder, the attention pooler and the masked decoders all use it).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.core.partitioning import constrain
from mmjax.models.layers import Dense, DenseGeneral, LayerNorm, param
from mmjax.models.mlp import Mlp

_NEG = -1e30
_HEADS = ('batch', 'length', 'heads', 'kv')


class CrossAttention(nnx.Module):
  """Queries from `x [batch, lq, embed]`, keys/values from `context [batch, lk, embed]`;
  `allowed [batch, lq, lk]` (bool) says which keys each query sees."""

  def __init__(self, width: int, num_heads: int, *, rngs: nnx.Rngs, dtype):
    h, d = num_heads, width // num_heads
    self.q = DenseGeneral((width,), (h, d), ('embed', 'heads', 'kv'), rngs=rngs, dtype=dtype)
    self.kv = DenseGeneral((width,), (2, h, d), ('embed', None, 'heads', 'kv'), rngs=rngs,
                           dtype=dtype)
    self.out = DenseGeneral((h, d), (width,), ('heads', 'kv', 'embed'), rngs=rngs, dtype=dtype)
    self.dtype = dtype

  def __call__(self, x: jax.Array, context: jax.Array, allowed: jax.Array) -> jax.Array:
    q = constrain(self.q(x), _HEADS)
    kv = self.kv(context)
    k, v = constrain(kv[:, :, 0], _HEADS), constrain(kv[:, :, 1], _HEADS)
    s = jnp.einsum('bqhd,bkhd->bhqk', q, k,   # scores accumulate in float32
                   preferred_element_type=jnp.float32) / math.sqrt(q.shape[-1])
    p = jax.nn.softmax(jnp.where(allowed[:, None], s, _NEG), axis=-1)
    o = jnp.einsum('bhqk,bkhd->bqhd', p.astype(self.dtype), v)
    return self.out(constrain(o, _HEADS))


class DecoderBlock(nnx.Module):
  """x + SelfAttn_causal(LN x) [+ CrossAttn(LN x, context)] + MLP(LN x)."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype, cross: bool):
    w = cfg.width
    self.norm1 = LayerNorm(w, rngs=rngs, dtype=dtype)
    self.attn = CrossAttention(w, cfg.num_heads, rngs=rngs, dtype=dtype)
    self.norm_c = LayerNorm(w, rngs=rngs, dtype=dtype) if cross else None
    self.cross = CrossAttention(w, cfg.num_heads, rngs=rngs, dtype=dtype) if cross else None
    self.norm2 = LayerNorm(w, rngs=rngs, dtype=dtype)
    self.mlp = Mlp(w, cfg.mlp_dim, rngs=rngs, dtype=dtype)

  def __call__(self, x, causal, context=None, context_allowed=None):
    y = self.norm1(x)
    x = constrain(x + self.attn(y, y, causal), ('batch', 'length', 'embed'))
    if self.cross is not None:
      x = constrain(x + self.cross(self.norm_c(x), context, context_allowed),
                    ('batch', 'length', 'embed'))
    return constrain(x + self.mlp(self.norm2(x))[0], ('batch', 'length', 'embed'))


class TextDecoder(nnx.Module):
  """`ids [batch, length]` (decoder inputs, BOS first) + encoder tokens `[batch, n, embed]` and
  their mask `[batch, n]` -> float32 logits `[batch, length, vocab]`. `cfg` is `config.model`."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    dc = cfg.caption_decoder
    self.vocab_size, self.max_len, self.dtype = cfg.vocab_size, cfg.max_text_length, dtype
    init = nnx.initializers.normal(0.02)
    self.token_embedding = param(rngs, init, (cfg.vocab_size + 1, cfg.width), ('vocab', 'embed'))
    self.pos = param(rngs, init, (cfg.max_text_length, cfg.width), (None, 'embed'))
    self.num_unimodal, self.num_multimodal = int(dc.unimodal_layers), int(dc.multimodal_layers)
    for i in range(self.num_unimodal):
      setattr(self, f'unimodal_{i}', DecoderBlock(cfg, rngs=rngs, dtype=dtype, cross=False))
    for i in range(self.num_multimodal):
      setattr(self, f'multimodal_{i}', DecoderBlock(cfg, rngs=rngs, dtype=dtype, cross=True))
    self.norm = LayerNorm(cfg.width, rngs=rngs, dtype=dtype)
    self.head = Dense(cfg.width, cfg.vocab_size, ('embed', 'vocab'), rngs=rngs, dtype=jnp.float32)

  @property
  def bos_id(self) -> int:
    return self.vocab_size

  def shift_right(self, targets: jax.Array) -> jax.Array:
    """`[batch, length]` targets -> decoder inputs `[BOS, t_0, .., t_{L-2}]`."""
    bos = jnp.full(targets.shape[:1] + (1,), self.bos_id, targets.dtype)
    return jnp.concatenate([bos, targets[:, :-1]], axis=1)

  def __call__(self, ids: jax.Array, context: jax.Array, context_mask: jax.Array) -> jax.Array:
    b, length = ids.shape
    if length > self.max_len:
      raise ValueError(f'caption of {length} tokens exceeds config.model.max_text_length='
                       f'{self.max_len}.')
    x = jnp.take(self.token_embedding[...], ids, axis=0).astype(self.dtype)
    x = constrain(x + self.pos[:length].astype(self.dtype), ('batch', 'length', 'embed'))
    causal = jnp.broadcast_to(jnp.tril(jnp.ones((length, length), bool)), (b, length, length))
    allowed = jnp.broadcast_to(context_mask.astype(bool)[:, None, :],
                               (b, length, context_mask.shape[1]))
    for i in range(self.num_unimodal):
      x = getattr(self, f'unimodal_{i}')(x, causal)
    context = context.astype(self.dtype)
    for i in range(self.num_multimodal):
      x = getattr(self, f'multimodal_{i}')(x, causal, context, allowed)
    logits = self.head(self.norm(x).astype(jnp.float32))
    return constrain(logits, ('batch', 'length', 'vocab'))


class AttentionPool(nnx.Module):
  """One learned query attends over encoder tokens `[batch, n, embed]` (mask `[batch, n]`)
  -> float32 `[batch, embed]`: CoCa's contrastive pooler."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    self.query = param(rngs, nnx.initializers.normal(0.02), (1, cfg.width), (None, 'embed'))
    self.attn = CrossAttention(cfg.width, cfg.num_heads, rngs=rngs, dtype=dtype)
    self.norm = LayerNorm(cfg.width, rngs=rngs, dtype=dtype)

  def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    b = tokens.shape[0]
    q = jnp.broadcast_to(self.query[...][None].astype(tokens.dtype), (b, 1, tokens.shape[-1]))
    allowed = mask.astype(bool)[:, None, :]
    return self.norm(self.attn(q, tokens, allowed))[:, 0].astype(jnp.float32)
