"""Dropless MoE experts, expert-parallel on a mesh: tokens travel to the experts' devices.

Each token's `top_k` claims are sorted by expert and run through a grouped matmul
(`mmjax.kernels.ragged_matmul`); nothing is dropped. Under `axis_rules` the computation runs in
`shard_map`: activations split on their examples (logical 'batch'), expert weights split on
their first axis like logical 'expert' (and gathered on the others, as FSDP does). With an
expert mesh axis of size `ep > 1`, each device holds `experts / ep` experts and

1. sorts its own claims by expert, so that they are also sorted by destination device;
2. sends them to their experts' devices (`mmjax.models.moe.expert_exchange`: `all_to_all` on the
   CPU, `ragged_all_to_all` on TPU and GPU), together with the per-expert counts;
3. sorts what it received by local expert and runs the grouped matmul over its local experts
   only (`group_offset`; the weights in `shard_map` are the local slice: no expert weight is
   gathered);
4. sends the results back the same way to where the claims came from.

Rows between devices are cast to `comm_dtype` (e.g. bf16 under an f32 model).
`capacity_factor` (`moe.dropless_capacity_factor`) sizes the receive and FFN buffers by the
claims a device actually makes rather than the worst case `ep x claims`
(`expert_exchange.capacity_rows`); within it the layer is exact, past it the overflowing claims
are counted (`dropped_fraction`, `expert_drop`) and contribute 0, as in a capacity router.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from mmjax.core import partitioning
from mmjax.kernels import ragged_matmul, resolve_backend
from mmjax.models.moe.expert_exchange import capacity_rows, exchange_ffn, resolve_exchange


def _ffn(rows, sizes, wi, bi, wo, bo, impl, group_offset=None):
  """`rows [m, embed]` sorted by expert with `sizes [experts]` -> `[m, embed]`; the weights hold
  experts `group_offset : group_offset + local` (None: all); rows of other experts and past
  `sum(sizes)` are garbage that the caller never reads."""
  local = wi.shape[0]
  offset = 0 if group_offset is None else group_offset
  group = jnp.searchsorted(jnp.cumsum(sizes), jnp.arange(rows.shape[0]), side='right')
  expert_of = jnp.clip(group - offset, 0, local - 1)
  h = ragged_matmul(rows, wi, sizes, impl=impl, group_offset=group_offset) + bi[expert_of]
  return ragged_matmul(jax.nn.gelu(h), wo, sizes, impl=impl,
                       group_offset=group_offset) + bo[expert_of]


def dropless_experts(x, index, weights, mask, params, *, impl='auto', comm_dtype=None,
                     exchange='auto', capacity_factor=0.0):
  """`x [batch, length, embed]`, the router's `index`/`weights [batch, length, top_k]`,
  `mask [batch, length]` and `params = (wi [experts, embed, mlp], bi [experts, mlp],
  wo [experts, mlp, embed], bo [experts, embed])` -> (`y [batch, length, embed]` float32, the
  weighted sum of each token's experts; `sizes [experts]` float32 real claims per expert;
  `kept [experts]` float32 those computed: all but the overflow past `capacity_factor`, see
  the module docstring; 0 = worst-case buffers, never over). Padding claims no expert and gets 0. `comm_dtype` (None = the weights' dtype) is the dtype
  of tokens between devices; `exchange` how they move ('auto', 'all_to_all', 'ragged';
  `mmjax.models.moe.expert_exchange`)."""
  experts, k = params[0].shape[0], index.shape[-1]
  comm_dtype = params[0].dtype if comm_dtype is None else jnp.dtype(comm_dtype)
  exchange = resolve_exchange(exchange, resolve_backend())

  def run(x, index, weights, mask, *params, axis=None, ep=1):
    b, length, d = x.shape
    n = b * length
    real = mask.reshape(n) > 0
    claims = jnp.where(real[:, None], index.reshape(n, k), experts).reshape(-1)   # [n * top_k]
    order = jnp.argsort(claims, stable=True)
    sizes = jnp.zeros((experts + 1,), jnp.int32).at[claims].add(1)[:experts]
    rows = x.reshape(n, d)[order // k]
    if ep == 1:
      ys, kept = _ffn(rows.astype(params[0].dtype), sizes, *params, impl), sizes
    else:
      ffn = lambda r, s, offset: _ffn(r, s, *params, impl, offset)
      ys, kept = exchange_ffn(rows, sizes, ffn, axis=axis, ep=ep, comm_dtype=comm_dtype,
                              exchange=exchange, compute_dtype=params[0].dtype,
                              capacity=capacity_rows(n * k, ep, capacity_factor))
    w = jnp.where(real[:, None], weights.reshape(n, k), 0.0).reshape(-1)[order]
    y = jnp.zeros((n, d), jnp.float32).at[order // k].add(ys.astype(jnp.float32) * w[:, None])
    return y.reshape(b, length, d), sizes[None], kept[None]

  ctx = partitioning.current_context()
  if ctx is None:
    y, sizes, kept = run(x, index, weights, mask, *params)
  else:
    mesh, rules = ctx
    lead = partitioning.logical_to_spec(('batch',), rules, mesh, x.shape[:1])[0]
    axis = partitioning.logical_to_spec(('expert',), rules, mesh, (experts,))[0]
    names = () if axis is None else ((axis,) if isinstance(axis, str) else tuple(axis))
    ep = math.prod(mesh.shape[a] for a in names)
    fn = lambda *a: run(*a, axis=axis, ep=ep)
    specs = (P(lead),) * 4 + (P(axis),) * 4
    y, sizes, kept = jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(lead),
                                   check_vma=False)(x, index, weights, mask, *params)
  return y, sizes.sum(0).astype(jnp.float32), kept.sum(0).astype(jnp.float32)
