"""Per-modality towers and the options published CLIP-family models need.

`config.model.towers.<modality>` gives a modality's tower its own size (width, num_layers,
num_heads, mlp_dim; 0 = the model's), pooling, causal attention, a pre-encoder LayerNorm
(`ln_pre`) and whether padding is masked; `tower_config` folds them into a view of
`config.model` that the embedding, encoder and projection of that modality are built from.

Poolings of the encoder output `h [batch, n, width]` (after the encoder's final LayerNorm):
  mean  masked mean                      cls   the prepended class token (`cls_<modality>`)
  eot   the token at the highest id      last  the last position (SigLIP's text tower)
        (CLIP's end-of-text token)
  map   a multihead attention-pool head (`MapHead`: one learnt probe, attention, LayerNorm,
        residual MLP; SigLIP's image tower)
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.core.choices import TOWER_POOLINGS
from mmjax.models.layers import LayerNorm, param
from mmjax.models.mlp import Mlp
from mmjax.models.text_decoder import CrossAttention
from mmjax.config.defaults import setting

POOLINGS = TOWER_POOLINGS
SIZE_KEYS = ('width', 'num_layers', 'num_heads', 'mlp_dim')
ACTIVATIONS = {
    'gelu_tanh': lambda x: jax.nn.gelu(x, approximate=True),
    'gelu': lambda x: jax.nn.gelu(x, approximate=False),
    'quick_gelu': lambda x: x * jax.nn.sigmoid(1.702 * x),
}


def activation(cfg):
  """The MLP nonlinearity `config.model.activation` names (gelu_tanh when absent)."""
  name = setting(cfg, 'model.activation')
  if name not in ACTIVATIONS:
    raise ValueError(f'config.model.activation must be one of {sorted(ACTIVATIONS)}, got {name!r}.')
  return ACTIVATIONS[name]


def norm_eps(cfg) -> float:
  return float(setting(cfg, 'model.norm_eps'))


def tower(cfg, modality: str) -> dict:
  """`config.model.towers.<modality>` as a dict with every key (old configs have none)."""
  towers = cfg.get('towers', None)
  t = towers.get(modality, None) if towers is not None else None
  out = dict(width=0, num_layers=0, num_heads=0, mlp_dim=0, pooling='', causal=False,
             ln_pre=False, padding_mask=True)
  if t is not None:
    out.update({k: t[k] for k in t.keys()})
  return out


def pooling(cfg, modality: str) -> str:
  p = tower(cfg, modality)['pooling'] or cfg.pooling
  if p not in POOLINGS:
    raise ValueError(f'config.model.towers.{modality}.pooling must be one of {POOLINGS}, '
                     f'got {p!r}.')
  if p in ('eot', 'last') and modality != 'text':
    raise ValueError(f"config.model.towers.{modality}.pooling={p!r} pools text only: use mean, "
                     'cls or map.')
  return p


def has_own_size(cfg, modality: str) -> bool:
  t = tower(cfg, modality)
  return any(t[k] and t[k] != cfg[k] for k in SIZE_KEYS)


def tower_config(cfg, modality: str):
  """A copy of `config.model` with the modality's tower sizes and its `causal` flag set."""
  t = tower(cfg, modality)
  view = copy.deepcopy(cfg)
  with view.unlocked():
    for k in SIZE_KEYS:
      if t[k]:
        view[k] = t[k]
    view['causal'] = bool(t['causal'])
  if view.width % view.num_heads:
    raise ValueError(f'config.model.towers.{modality}: width {view.width} is not divisible by '
                     f'num_heads {view.num_heads}.')
  return view


def pool_tokens(kind: str, h: jax.Array, mask: jax.Array, ids: jax.Array | None = None,
                head=None) -> jax.Array:
  """`h [batch, n, width]` -> float32 `[batch, width]` by the pooling `kind` (module doc)."""
  if kind == 'map':
    return head(h, mask)
  h = h.astype(jnp.float32)
  if kind == 'cls':
    return h[:, 0]
  if kind == 'last':
    return h[:, -1]
  if kind == 'eot':
    if ids is None:
      raise ValueError("pooling 'eot' needs the text ids.")
    return jnp.take_along_axis(h, jnp.argmax(ids, axis=-1)[:, None, None], axis=1)[:, 0]
  w = mask.astype(jnp.float32)[..., None]
  return (h * w).sum(1) / jnp.maximum(w.sum(1), 1.0)


class MapHead(nnx.Module):
  """Multihead attention pooling: a learnt probe attends over `tokens [batch, n, width]`
  (mask `[batch, n]`), then `x + MLP(LN(x))` -> float32 `[batch, width]`."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    self.probe = param(rngs, nnx.initializers.normal(0.02), (1, cfg.width), (None, 'embed'))
    self.attn = CrossAttention(cfg.width, cfg.num_heads, rngs=rngs, dtype=dtype)
    self.norm = LayerNorm(cfg.width, rngs=rngs, dtype=dtype, eps=norm_eps(cfg))
    self.mlp = Mlp(cfg.width, cfg.mlp_dim, rngs=rngs, dtype=dtype, act=activation(cfg))

  def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    b = tokens.shape[0]
    q = jnp.broadcast_to(self.probe[...][None].astype(tokens.dtype), (b, 1, tokens.shape[-1]))
    x = self.attn(q, tokens, mask.astype(bool)[:, None, :])
    x = x + self.mlp(self.norm(x))[0]
    return x[:, 0].astype(jnp.float32)
