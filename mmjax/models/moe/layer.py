"""Sparse Mixture-of-Experts MLP: a float32 router sends each token to a few expert MLPs.

Routers (`config.model.moe.router`):
- `tokens_choose`: each token picks its top_k experts; an expert keeps `capacity` claims
  (optionally batch-prioritised), the rest are dropped (the residual carries them).
- `experts_choose`: each expert takes its top-`capacity` tokens (balanced by construction, so
  its load-balancing loss is 0).
- `dropless`: tokens_choose without capacity; tokens sorted by expert go through a grouped
  matmul (`mmjax.kernels.ragged_matmul`, impl `config.model.moe.impl`); on an expert mesh axis
  tokens travel by all_to_all to the devices holding their experts (`mmjax.models.moe.dropless`).

Routing groups: capacity = max(min_capacity, ceil(capacity_factor * group * top_k / experts))
per group, where a group is one example, or with `moe.group_size` that many tokens taken in
order across examples (batch * length must be a multiple of it); the output does not depend on
the mesh. Tokens reach experts by scatter/gather into a `[experts, groups, capacity, embed]`
buffer (never a one-hot) in `moe.comm_dtype` (empty = the model dtype), constrained to logical
`('expert', 'batch', None, 'embed')`: on an expert mesh axis XLA moves tokens by all-to-all.
With `moe.normalize_combine_weights` the top_k weights are divided by their sum (top-1: 1.0).
The load-balancing loss is 1.0 at balance, times top_k with `moe.load_balancing_scale='switch'`
(the Switch Transformer / MaxText convention).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.core import partitioning
from mmjax.core.partitioning import constrain
# The token -> expert routing functions are part of this module's API (imported from here).
from mmjax.models.moe.routing import (expert_capacity, load_balancing_loss, route_experts_choose,
                                         route_tokens_choose, router_entropy, router_probs,
                                         router_z_loss, slot_positions)
from mmjax.models import towers
from mmjax.models.moe.dropless import dropless_experts
from mmjax.models.layers import Dense, param, stacked
from mmjax.models.moe.config import (ROUTERS, MoeConfigError, check_expert_axis,
                                     check_moe_config)
from mmjax.config.defaults import setting

__all__ = ['MoeMlp', 'MoeConfigError', 'ROUTERS', 'ROUTER_INIT', 'check_expert_axis',
           'check_moe_config', 'expert_capacity', 'load_balancing_loss', 'route_experts_choose',
           'route_tokens_choose', 'router_entropy', 'router_probs', 'router_z_loss',
           'slot_positions']

ROUTER_INIT = nnx.initializers.normal(0.02)   # small logits: near-uniform routing at the start


class ExpertDense(nnx.Module):
  """Per-expert `kernel [experts, in, out]` and `bias [experts, out]`."""

  def __init__(self, experts: int, n_in: int, n_out: int, axes, *, rngs: nnx.Rngs):
    self.kernel = param(rngs, stacked(nnx.initializers.xavier_uniform()), (experts, n_in, n_out),
                        axes)
    self.bias = param(rngs, nnx.initializers.zeros, (experts, n_out), (axes[0], axes[2]))


class MoeMlp(nnx.Module):
  """`[batch, length, embed]` + `mask [batch, length]` -> `(y, aux)`; see the module docstring.

  `aux` (float32, padding excluded): `load_balancing_loss`, `router_z_loss`, `router_entropy`
  (mean over tokens), `dropped_fraction` (token-slots over capacity; for experts_choose, tokens
  no expert took), `expert_load [experts]` (fraction of the router's token-slots per expert,
  before capacity; for experts_choose, of the real tokens taken), `expert_drop [experts]`
  (fraction of each expert's claims over its capacity; 0 for experts_choose, and for dropless
  within `moe.dropless_capacity_factor`: `dropless.py`) and,
  except for dropless, `capacity_use [experts]` (fraction of each expert's slots holding a
  real token).
  """

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    check_moe_config(cfg)
    moe = cfg.moe
    self.num_experts, self.top_k = int(moe.num_experts), int(moe.top_k)
    self.router_kind, self.capacity_factor = moe.router, float(moe.capacity_factor)
    self.batch_prioritized, self.jitter = bool(moe.batch_prioritized), float(moe.jitter)
    self.impl, self.dtype = moe.impl, dtype
    self.comm_dtype = jnp.dtype(setting(moe, 'model.moe.comm_dtype') or dtype)
    self.exchange = setting(moe, 'model.moe.exchange')
    self.dropless_capacity_factor = float(moe.get('dropless_capacity_factor', 0.0))
    self.group_size = int(setting(moe, 'model.moe.group_size'))
    self.min_capacity = int(setting(moe, 'model.moe.min_capacity'))
    self.lb_scale = float(self.top_k if moe.get('load_balancing_scale', '') == 'switch' else 1)
    self.act = towers.activation(cfg)   # the dense MLP's (an upcycled CLIP keeps QuickGELU)
    if self.router_kind == 'dropless' and setting(cfg, 'model.activation') != 'gelu_tanh':
      raise ValueError("config.model.moe.router='dropless' computes experts with gelu_tanh only: "
                       f"use another router with config.model.activation={cfg.activation!r}.")
    self.normalize = bool(setting(moe, 'model.moe.normalize_combine_weights'))
    self.router = Dense(cfg.width, self.num_experts, ('embed', None), rngs=rngs, use_bias=False,
                        dtype=jnp.float32, kernel_init=ROUTER_INIT)
    self.wi = ExpertDense(self.num_experts, cfg.width, cfg.mlp_dim, ('expert', 'embed', 'mlp'),
                          rngs=rngs)
    self.wo = ExpertDense(self.num_experts, cfg.mlp_dim, cfg.width, ('expert', 'mlp', 'embed'),
                          rngs=rngs)

  def router_logits(self, x: jax.Array, rng=None) -> jax.Array:
    """`[batch, length, embed]` -> float32 `[batch, length, experts]`; with `rng` and
    `moe.jitter` the router input is scaled by uniform noise in [1 - jitter, 1 + jitter]."""
    x = x.astype(jnp.float32)
    if rng is not None and self.jitter > 0:
      x = x * jax.random.uniform(rng, x.shape, jnp.float32, 1.0 - self.jitter, 1.0 + self.jitter)
    return self.router(x)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None, *, rng=None):
    shape = x.shape
    ctx = partitioning.current_context()
    if ctx is not None:
      check_expert_axis(self.num_experts, int(dict(ctx[0].shape).get('expert', 1)))
    mask = jnp.ones(shape[:2], jnp.int32) if mask is None else mask.astype(jnp.int32)
    if self.group_size and self.group_size != shape[1]:
      if (shape[0] * shape[1]) % self.group_size:
        raise MoeConfigError(f'config.model.moe.group_size={self.group_size} does not divide the '
                             f'{shape[0]}x{shape[1]} tokens of the batch: choose a divisor of '
                             f'{shape[0] * shape[1]} (or 0 for one group per example).')
      x = x.reshape(-1, self.group_size, shape[2])
      mask = mask.reshape(x.shape[:2])
    b, length, _ = x.shape
    logits = self.router_logits(x, rng)
    probs = router_probs(logits)
    if self.router_kind == 'experts_choose':
      y, load, stats = self._experts_choose(x, logits, mask)
      lb = jnp.zeros((), jnp.float32)
    else:
      weights, index = jax.lax.top_k(probs, self.top_k)            # [batch, length, top_k]
      if self.router_kind == 'dropless':
        y, load, stats = self._dropless(x, index, weights, mask)
      else:
        y, load, stats = self._tokens_choose(x, logits, weights, mask)
      lb = load_balancing_loss(probs.reshape(b * length, -1), index.reshape(b * length, -1),
                               mask.reshape(-1)) * self.lb_scale
    flat_mask = mask.reshape(-1)
    aux = {'load_balancing_loss': lb,
           'router_z_loss': router_z_loss(logits.reshape(b * length, -1), flat_mask),
           'router_entropy': router_entropy(probs.reshape(b * length, -1), flat_mask),
           'expert_load': load, **stats}
    return y.reshape(shape).astype(x.dtype), aux

  # -- expert computation on the `[experts, batch, capacity, embed]` buffer --------------------

  def _experts(self, buf: jax.Array) -> jax.Array:
    """`[batch, experts, capacity, embed]` (token side) -> same, computed on the expert side."""
    buf = constrain(buf, ('batch', None, None, 'embed'))
    buf = constrain(buf.transpose(1, 0, 2, 3), ('expert', 'batch', None, 'embed'))
    dt = self.dtype
    h = jnp.einsum('egcd,edh->egch', buf.astype(dt), self.wi.kernel[...].astype(dt))
    h = self.act(h + self.wi.bias[...].astype(dt)[:, None, None])
    h = constrain(h, ('expert', 'batch', None, 'mlp'))
    y = jnp.einsum('egch,ehd->egcd', h, self.wo.kernel[...].astype(dt))
    y = y + self.wo.bias[...].astype(dt)[:, None, None]
    y = constrain(y, ('expert', 'batch', None, 'embed'))
    return constrain(y.transpose(1, 0, 2, 3), ('batch', None, None, 'embed'))

  def _tokens_choose(self, x, logits, weights, mask):
    b, length, d = x.shape
    e, k = self.num_experts, self.top_k
    cap = expert_capacity(length, e, k, self.capacity_factor, self.min_capacity)
    route = lambda lg, m: route_tokens_choose(lg, k, cap, mask=m,
                                              batch_prioritized=self.batch_prioritized)
    index, combine, position = jax.vmap(route)(logits, mask)        # [batch, length, top_k]
    if self.normalize:
      combine = combine / jnp.maximum(weights.sum(-1, keepdims=True), 1e-9)
    slot = jnp.where(position >= 0, index * cap + position, e * cap)  # e*cap = dropped

    def scatter(xg, sg):
      buf = jnp.zeros((e * cap, d), self.comm_dtype)
      for j in range(k):
        buf = buf.at[sg[:, j]].add(xg.astype(self.comm_dtype), mode='drop')
      return buf
    buf = jax.vmap(scatter)(x, slot).reshape(b, e, cap, d)
    out = self._experts(buf).astype(self.comm_dtype).reshape(b, e * cap, d)
    gather = jax.vmap(lambda o, s: o.at[s].get(mode='fill', fill_value=0))
    y = jnp.zeros((b, length, d), jnp.float32)
    for j in range(k):
      y = y + gather(out, slot[..., j]).astype(jnp.float32) * combine[..., j, None]
    routed = jnp.broadcast_to(mask[..., None], index.shape)          # int32 counts: exact
    load = jnp.zeros((e,), jnp.int32).at[index.reshape(-1)].add(routed.reshape(-1))
    total = jnp.maximum(routed.sum(), 1).astype(jnp.float32)
    dropped = (routed.sum() - jnp.sum(position >= 0)).astype(jnp.float32) / total
    kept = jnp.zeros((e,), jnp.int32).at[index.reshape(-1)].add(
        (position >= 0).reshape(-1).astype(jnp.int32))
    stats = {'dropped_fraction': dropped,
             'expert_drop': (load - kept).astype(jnp.float32) / jnp.maximum(load, 1),
             'capacity_use': kept.astype(jnp.float32) / (cap * b)}
    return y, load.astype(jnp.float32) / total, stats

  def _experts_choose(self, x, logits, mask):
    b, length, d = x.shape
    e = self.num_experts
    cap = min(length, expert_capacity(length, e, self.top_k, self.capacity_factor,
                                      self.min_capacity))
    route = lambda lg, m: route_experts_choose(lg, cap, mask=m)
    token_index, combine = jax.vmap(route)(logits, mask)            # [batch, experts, cap]
    buf = jax.vmap(lambda xg, ti: xg[ti])(x.astype(self.comm_dtype), token_index)
    out = self._experts(buf).astype(self.comm_dtype).astype(jnp.float32) * combine[..., None]
    y = jax.vmap(lambda o, ti: jnp.zeros((length, d), jnp.float32).at[ti.reshape(-1)].add(
        o.reshape(-1, d)))(out, token_index)
    taken = jnp.take_along_axis(mask, token_index.reshape(b, -1), axis=1).reshape(token_index.shape)
    load = taken.astype(jnp.float32).sum((0, 2))
    count = lambda ti: jnp.zeros((length,), jnp.int32).at[ti.reshape(-1)].add(1)
    hits = jax.vmap(count)(token_index)                             # experts per token
    missed = jnp.sum((hits == 0) * mask).astype(jnp.float32)
    stats = {'dropped_fraction': missed / jnp.maximum(mask.sum(), 1).astype(jnp.float32),
             'expert_drop': jnp.zeros((e,), jnp.float32), 'capacity_use': load / (cap * b)}
    return y, load / jnp.maximum(load.sum(), 1.0), stats

  def _dropless(self, x, index, weights, mask):
    if self.normalize:
      weights = weights / jnp.maximum(weights.sum(-1, keepdims=True), 1e-9)
    params = [p[...].astype(self.dtype) for p in (self.wi.kernel, self.wi.bias, self.wo.kernel,
                                                  self.wo.bias)]
    y, sizes, kept = dropless_experts(x, index, weights, mask, params, impl=self.impl,
                                      comm_dtype=self.comm_dtype, exchange=self.exchange,
                                      capacity_factor=self.dropless_capacity_factor)
    stats = {'dropped_fraction': (sizes.sum() - kept.sum()) / jnp.maximum(sizes.sum(), 1.0),
             'expert_drop': (sizes - kept) / jnp.maximum(sizes, 1.0)}
    return y, sizes / jnp.maximum(sizes.sum(), 1.0), stats
