"""Dropless MoE experts, expert-parallel on a mesh: tokens travel to the experts' devices.

Each token's `top_k` claims are sorted by expert and run through a grouped matmul
(`mmjax.kernels.ragged_matmul`); nothing is dropped. Under `axis_rules` the computation runs in
`shard_map`: activations split on their examples (logical 'batch'), expert weights split on
their first axis like logical 'expert' (and gathered on the others, as FSDP does). With an
expert mesh axis of size `ep > 1`, each device holds `experts / ep` experts and

1. sorts its own claims by expert, so that they are also sorted by destination device;
2. sends them with one `all_to_all` over the expert axis, together with the per-expert counts;
3. sorts what it received by local expert and runs the grouped matmul over its local experts
   only (the weights in `shard_map` are the local slice: no expert weight is gathered);
4. sends the results back with a second `all_to_all` to where the claims came from.

`jax.lax.ragged_all_to_all` would send exactly the claims, but XLA:CPU cannot run it, so the
send buffer is `[ep, claims, embed]` per device, sized for the worst case that every claim of
the device goes to one device: `ep` times the claims, which keeps the layer dropless. Its
rows are cast to `comm_dtype` (e.g. bf16 under an f32 model) for both exchanges.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from mmjax.core import partitioning
from mmjax.kernels import ragged_matmul


def _ffn(rows, sizes, wi, bi, wo, bo, impl):
  """`rows [m, embed]` sorted by expert with `sizes [experts]` -> `[m, embed]`; rows past
  `sum(sizes)` are garbage that the caller never reads."""
  expert_of = jnp.minimum(jnp.searchsorted(jnp.cumsum(sizes), jnp.arange(rows.shape[0]),
                                           side='right'), sizes.shape[0] - 1)
  h = ragged_matmul(rows, wi, sizes, impl=impl) + bi[expert_of]
  return ragged_matmul(jax.nn.gelu(h), wo, sizes, impl=impl) + bo[expert_of]


def _exchange(rows, sizes, params, *, axis, ep, impl, comm_dtype):
  """Expert-parallel `_ffn`: `rows [c, embed]` sorted by global expert, `sizes [experts]` (the
  first `sum(sizes)` rows are real) -> `[c, embed]` results in the same order."""
  c, d = rows.shape
  experts = sizes.shape[0]
  local = experts // ep
  send_sizes = sizes.reshape(ep, local).sum(1)                     # [ep] rows per device
  start = jnp.cumsum(send_sizes) - send_sizes
  dest = jnp.searchsorted(jnp.cumsum(send_sizes), jnp.arange(c), side='right')   # ep = unused
  slot = jnp.where(dest < ep, dest * c + jnp.arange(c) - start[jnp.minimum(dest, ep - 1)],
                   ep * c)
  send = jnp.zeros((ep * c, d), comm_dtype).at[slot].set(rows.astype(comm_dtype), mode='drop')
  recv = jax.lax.all_to_all(send.reshape(ep, c, d), axis, 0, 0)    # [source, c, embed]
  counts = jax.lax.all_to_all(sizes.reshape(ep, local), axis, 0, 0)   # [source, local]
  ends = jnp.cumsum(counts, axis=1)
  local_of = jax.vmap(lambda e: jnp.searchsorted(e, jnp.arange(c), side='right'))(ends)
  order = jnp.argsort(local_of.reshape(-1), stable=True)          # by local expert; empty last
  dt = params[0].dtype
  out = _ffn(recv.reshape(ep * c, d)[order].astype(dt), counts.sum(0), *params, impl)
  back = jnp.zeros((ep * c, d), comm_dtype).at[order].set(out.astype(comm_dtype))
  ret = jax.lax.all_to_all(back.reshape(ep, c, d), axis, 0, 0)     # [destination, c, embed]
  return ret.reshape(ep * c, d).at[slot].get(mode='fill', fill_value=0)


def dropless_experts(x, index, weights, mask, params, *, impl='auto', comm_dtype=None):
  """`x [batch, length, embed]`, the router's `index`/`weights [batch, length, top_k]`,
  `mask [batch, length]` and `params = (wi [experts, embed, mlp], bi [experts, mlp],
  wo [experts, mlp, embed], bo [experts, embed])` -> (`y [batch, length, embed]` float32, the
  weighted sum of each token's experts; `sizes [experts]` float32 real claims per expert).
  Padding claims no expert and gets 0. `comm_dtype` (None = the weights' dtype) is the dtype
  of tokens between devices."""
  experts, k = params[0].shape[0], index.shape[-1]
  comm_dtype = params[0].dtype if comm_dtype is None else jnp.dtype(comm_dtype)

  def run(x, index, weights, mask, *params, axis=None, ep=1):
    b, length, d = x.shape
    n = b * length
    real = mask.reshape(n) > 0
    claims = jnp.where(real[:, None], index.reshape(n, k), experts).reshape(-1)   # [n * top_k]
    order = jnp.argsort(claims, stable=True)
    sizes = jnp.zeros((experts + 1,), jnp.int32).at[claims].add(1)[:experts]
    rows = x.reshape(n, d)[order // k]
    if ep == 1:
      ys = _ffn(rows.astype(params[0].dtype), sizes, *params, impl)
    else:
      ys = _exchange(rows, sizes, params, axis=axis, ep=ep, impl=impl, comm_dtype=comm_dtype)
    w = jnp.where(real[:, None], weights.reshape(n, k), 0.0).reshape(-1)[order]
    y = jnp.zeros((n, d), jnp.float32).at[order // k].add(ys.astype(jnp.float32) * w[:, None])
    return y.reshape(b, length, d), sizes[None]

  ctx = partitioning.current_context()
  if ctx is None:
    y, sizes = run(x, index, weights, mask, *params)
  else:
    mesh, rules = ctx
    lead = partitioning.logical_to_spec(('batch',), rules, mesh, x.shape[:1])[0]
    axis = partitioning.logical_to_spec(('expert',), rules, mesh, (experts,))[0]
    names = () if axis is None else ((axis,) if isinstance(axis, str) else tuple(axis))
    ep = math.prod(mesh.shape[a] for a in names)
    fn = lambda *a: run(*a, axis=axis, ep=ep)
    specs = (P(lead),) * 4 + (P(axis),) * 4
    y, sizes = jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(lead),
                             check_vma=False)(x, index, weights, mask, *params)
  return y, sizes.sum(0).astype(jnp.float32)
