"""MAELRE-style long-range encoder: progressive token merging between stages.

`model.maelre.merge_after` lists the blocks after which tokens are merged (the stages are the
runs of blocks between merges); each merge removes `merge_ratio` of the current tokens by
bipartite soft matching (ToMe, Bolya et al. 2023): tokens alternate into sets A and B, each A
token finds its most similar B token by cosine similarity of the block's attention keys (heads
concatenated; a Mamba block's output features), and the `r` best-matched A tokens are averaged
into their B partners, weighted by size. Every token carries its size (how many input tokens it
stands for); attention is size-weighted ("proportional attention": `softmax(q.k/sqrt(d) +
log size_k)`), so a merged token draws the attention its members would have together. The kept
tokens stay in their original order (Mamba layers after a merge still see a sequence).

Padding: a padded token has size 0, so averaging gives it weight 0 wherever it goes (nothing of
its value reaches a real token), the matching pairs padding with padding first and real with
real before mixing them, and the mask after a merge is `size > 0`. The encoder returns
`[batch, length, width]` at the input length: each input token gets the output of the merged
token it ended in, so mean pooling over the real input tokens is the size-weighted mean of the
merged tokens and every head built on the plain encoder works unchanged. With `pooling='cls'`
the first token is merged last.

Attention approximation for the long stages: blocks whose input has more than
`maelre.linear_above` tokens use size-weighted linear attention (Katharopoulos et al. 2020,
feature map elu + 1): `out_i = phi(q_i) . sum_j s_j phi(k_j) v_j^T / phi(q_i) . sum_j s_j
phi(k_j)`, O(length) time and memory. Chosen over Nystrom and local+global windows because
merging scrambles neighbourhoods (a merged token's members can come from anywhere), which
breaks the locality windows and segment-mean landmarks rely on, while the linear form is
order-free and takes sizes and padding exactly (a weight per key). Short stages (after merging)
keep exact softmax attention.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mmjax.core.partitioning import constrain
from mmjax.models.encoder import Encoder
from mmjax.models.mlp import Mlp
from mmjax.config.defaults import setting


def merging_on(cfg) -> bool:
  """Whether `cfg` (config.model) asks for MAELRE token merging."""
  mc = cfg.get('maelre', None)
  return bool(mc is not None and tuple(setting(mc, 'model.maelre.merge_after') or ()))


def proportional_attention(q, k, v, sizes):
  """Size-weighted softmax attention. `q, k, v [b, l, heads, kv]`, `sizes [b, l]` (0 =
  padding) -> `[b, l, heads, kv]`. Real queries attend real keys with logits + log(size);
  padded queries attend padded keys uniformly (as the plain encoder's segment mask does)."""
  real = sizes > 0
  scale = 1.0 / math.sqrt(q.shape[-1])
  logits = jnp.einsum('bqhd,bkhd->bhqk', q.astype(jnp.float32), k.astype(jnp.float32)) * scale
  bias = jnp.where(real, jnp.log(jnp.where(real, sizes, 1.0)), 0.0)[:, None, None, :]
  allowed = (real[:, :, None] == real[:, None, :])[:, None]
  logits = jnp.where(allowed, logits + bias, -jnp.inf)
  w = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum('bhqk,bkhd->bqhd', w, v.astype(jnp.float32)).astype(q.dtype)


def linear_attention(q, k, v, sizes):
  """Size-weighted linear attention (feature map elu + 1) with padding keys at weight 0;
  same shapes as `proportional_attention`."""
  phi = lambda x: jax.nn.elu(x.astype(jnp.float32)) + 1.0
  qf, kf = phi(q), phi(k) * sizes.astype(jnp.float32)[:, :, None, None]
  kv = jnp.einsum('bkhd,bkhe->bhde', kf, v.astype(jnp.float32))
  num = jnp.einsum('bqhd,bhde->bqhe', qf, kv)
  den = jnp.einsum('bqhd,bhd->bqh', qf, kf.sum(1))[..., None]
  return (num / jnp.maximum(den, 1e-6)).astype(q.dtype)


def bipartite_merge(x, sizes, metric, r: int, protect_first: bool = False):
  """Merges `r` tokens of each example. `x [b, l, w]`, `sizes [b, l]` float (0 = padding),
  `metric [b, l, c]` (similarity features) -> `(x [b, l-r, w], sizes [b, l-r], source [b, l])`
  where `source[p]` is the new index of old token p (merged tokens: their destination's)."""
  b, l, _ = x.shape
  n_a, n_b = (l + 1) // 2, l // 2
  r = max(0, min(int(r), n_a, n_b))
  if r == 0:
    return x, sizes, jnp.broadcast_to(jnp.arange(l), (b, l))
  m = metric.astype(jnp.float32)
  m = m * jax.lax.rsqrt(jnp.maximum(jnp.sum(m * m, -1, keepdims=True), 1e-12))
  sim = jnp.einsum('bic,bjc->bij', m[:, 0::2], m[:, 1::2])         # [b, n_a, n_b]
  real_a, real_b = sizes[:, 0::2] > 0, sizes[:, 1::2] > 0
  same = real_a[:, :, None] == real_b[:, None, :]
  # padding with padding first (2), real with real by similarity ([-1, 1]), mixed last (-2)
  sim = jnp.where(same, jnp.where(real_a[:, :, None], sim, 2.0), -2.0)
  if protect_first:
    sim = sim.at[:, 0].set(-3.0)
  best, dst = sim.max(-1), jnp.argmax(sim, -1)                      # [b, n_a]
  order = jnp.argsort(-best, axis=-1, stable=True)
  merged_a, kept_a = order[:, :r], order[:, r:]
  f32 = jnp.float32
  xa, xb = x[:, 0::2].astype(f32), x[:, 1::2].astype(f32)
  sa, sb = sizes[:, 0::2].astype(f32), sizes[:, 1::2].astype(f32)
  take = lambda arr, idx: jnp.take_along_axis(arr, idx, axis=1)
  src_s = take(sa, merged_a)                                        # [b, r]
  src_x = take(xa, merged_a[..., None]) * src_s[..., None]
  dst_r = take(dst, merged_a)
  rows = jnp.arange(b)[:, None]
  sum_b = (xb * sb[..., None]).at[rows, dst_r].add(src_x)
  new_sb = sb.at[rows, dst_r].add(src_s)
  new_xb = jnp.where(new_sb[..., None] > 0, sum_b / jnp.maximum(new_sb, 1e-12)[..., None], xb)
  # kept tokens (unmerged A and all of B) in their original order
  pos_a = 2 * jnp.arange(n_a)
  pos_b = 2 * jnp.arange(n_b) + 1
  kept_pos = jnp.sort(jnp.concatenate([pos_a[kept_a], jnp.broadcast_to(pos_b, (b, n_b))], 1), 1)
  full_x = x.astype(f32).at[:, 1::2].set(new_xb)
  full_s = sizes.astype(f32).at[:, 1::2].set(new_sb)
  new_x = take(full_x, kept_pos[..., None]).astype(x.dtype)
  new_s = take(full_s, kept_pos)
  new_index = jnp.zeros((b, l), jnp.int32).at[rows, kept_pos].set(
      jnp.broadcast_to(jnp.arange(l - r, dtype=jnp.int32), (b, l - r)))
  a_target = take(new_index, 2 * dst + 1)                           # where each A would go
  is_merged = jnp.zeros((b, n_a), bool).at[rows, merged_a].set(True)
  a_index = jnp.where(is_merged, a_target, new_index[:, 0::2])
  source = new_index.at[:, 0::2].set(a_index)
  return new_x, new_s, source


def _attention_block(block, x, sizes, linear: bool):
  """`block` (an encoder Block with `.attn`) with size-weighted attention; returns (x, aux,
  keys [b, l, heads * kv])."""
  attn = block.attn
  qkv = attn.qkv(block.norm1(x))
  q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
  if attn.q_norm is not None:
    q, k = attn.q_norm(q), attn.k_norm(k)
  names = ('batch', 'length', 'heads', 'kv')
  q, k, v = constrain(q, names), constrain(k, names), constrain(v, names)
  o = (linear_attention if linear else proportional_attention)(q, k, v, sizes)
  x = constrain(x + attn.out(o.astype(x.dtype)), ('batch', 'length', 'embed'))
  return x, k.reshape(k.shape[:2] + (-1,))


class MaelreEncoder(Encoder):
  """The encoder (same blocks and parameters as `Encoder`) with token merging after the
  blocks `cfg.maelre.merge_after`; `(x [b, l, w], mask [b, l]) -> ([b, l, w], aux)`.
  Blocks run unrolled (a merge changes the length, so runs cannot share one scan)."""

  def __init__(self, cfg, *, rngs, dtype):
    super().__init__(cfg, rngs=rngs, dtype=dtype)
    mc = cfg.maelre
    self.merge_after = tuple(int(i) for i in mc.merge_after)
    bad = [i for i in self.merge_after if not 0 <= i < cfg.num_layers]
    if bad:
      raise ValueError(f'config.model.maelre.merge_after {bad} are outside '
                       f'0..{cfg.num_layers - 1}.')
    if cfg.get('routed_attention', None) is not None and tuple(cfg.routed_attention.layers):
      raise ValueError('config.model.maelre merging and routed_attention cannot be combined '
                       '(merging scrambles the regions); drop one of them.')
    self.merge_ratio = float(mc.merge_ratio)
    self.linear_above = int(mc.linear_above)
    self.protect_first = cfg.pooling == 'cls'

  def __call__(self, x, mask, *, rng=None, region_size=None, trailing_padding=False):
    del region_size, trailing_padding   # padding travels as size 0 through every stage
    b, length = mask.shape
    sizes = mask.astype(jnp.float32)
    source = jnp.broadcast_to(jnp.arange(length), (b, length))
    aux = {}
    for i in range(self.num_layers):
      block = getattr(self, f'block_{i}')
      layer_rng = None if rng is None else jax.random.fold_in(rng, i)
      tmask = (sizes > 0).astype(mask.dtype)
      if hasattr(block, 'attn'):
        linear = 0 < self.linear_above < x.shape[1]
        x, keys = _attention_block(block, x, sizes, linear)
        y, layer_aux = (block.mlp(block.norm2(x), tmask) if isinstance(block.mlp, Mlp)
                        else block.mlp(block.norm2(x), tmask, rng=layer_rng))
        x = constrain(x + y, ('batch', 'length', 'embed'))
      else:
        x, layer_aux = block(x, tmask, rng=layer_rng)
        keys = x
      if layer_aux:
        aux[f'layer_{i}'] = layer_aux
      if i in self.merge_after:
        r = int(x.shape[1] * self.merge_ratio)
        x, sizes, step = bipartite_merge(x, sizes, keys, r, self.protect_first)
        source = jnp.take_along_axis(step, source, axis=1)
        x = constrain(x, ('batch', 'length', 'embed'))
    x = self.norm(x)
    return jnp.take_along_axis(x, source[..., None], axis=1), aux
