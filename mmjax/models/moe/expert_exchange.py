"""Moving dropless MoE claims to the devices that hold their experts and back, in `shard_map`.

A device's claims `rows [c, embed]` are sorted by global expert, hence by destination device
(experts `d * local : (d + 1) * local` live on device d of the expert axis, `ep` devices).
Two transports:

- 'all_to_all' (`jax.lax.all_to_all`, runs everywhere incl. XLA:CPU): the send buffer is
  `[ep, c, embed]`, chunk d holding the rows for device d, sized for the worst case that all
  `c` rows go to one device (that keeps the layer dropless); the receiver gets `[ep, c, embed]`
  by source, each chunk's real rows first.
- 'ragged' (`jax.lax.ragged_all_to_all`, TPU and GPU): exactly the rows are sent, from the
  sorted rows in place; the receiver gets them packed by source into an `[ep * c, embed]`
  buffer (again the worst case). On the CPU, where XLA cannot run it, an all-gather emulation
  with the same contract stands in (tests check the offsets on it).

The receiver sorts its rows by local expert and runs `ffn(rows, group_sizes, group_offset)`:
a grouped matmul over its local experts only, with `group_sizes [experts]` over all experts
(zero outside the device's) and `group_offset = device * local`. Results return the same way.
Rows travel in `comm_dtype`.

Capacity (`moe.dropless_capacity_factor` f > 0): the worst case above makes every buffer
`ep` times the claims, `ep * c` rows (send, receive and the FFN's saved activations). With a
capacity, the receive and FFN buffers hold `capacity = ceil(f * c)` rows (rounded up to 8, at
most `ep * c`): 'ragged' packs up to that many rows per receiver, sources in device order;
'all_to_all' gives each (source, destination) pair `ceil(capacity / ep)` rows. Within capacity
the result is exact (the same as the worst-case buffers); rows past it are not computed (their
expert output is 0, as a capacity router drops them) and counted: `exchange_ffn` returns the
per-expert counts it did compute, so the layer reports the overflow.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mmjax.kernels import resolve_backend

EXCHANGES = ('auto', 'all_to_all', 'ragged')


def resolve_exchange(exchange: str, backend: str) -> str:
  """'auto' is 'ragged' on TPU and GPU, 'all_to_all' on the CPU."""
  if exchange not in EXCHANGES:
    raise ValueError(f'Unknown MoE exchange {exchange!r}; accepted: {", ".join(EXCHANGES)}.')
  if exchange == 'auto':
    return 'all_to_all' if backend == 'cpu' else 'ragged'
  return exchange


def _ragged_emulated(operand, output, in_off, send, out_off, recv, *, axis_name):
  """`jax.lax.ragged_all_to_all` by all-gather (CPU stand-in; same arguments and result)."""
  del recv
  ops, ins, sends, outs = (jax.lax.all_gather(a, axis_name) for a in (operand, in_off, send,
                                                                       out_off))
  me = jax.lax.axis_index(axis_name)
  lo, size, src_lo = outs[:, me], sends[:, me], ins[:, me]            # per source
  j = jnp.arange(output.shape[0])
  hit = (j[:, None] >= lo[None]) & (j[:, None] < (lo + size)[None])   # [rows, sources]
  src = jnp.argmax(hit, axis=1)
  row = jnp.clip(src_lo[src] + j - lo[src], 0, operand.shape[0] - 1)
  return jnp.where(hit.any(1)[:, None], ops[src, row], output)


def _local_sort(num_rows, chunk_start, counts):
  """Order of received rows by local expert (padding last) and its inverse-free pieces:
  chunk s (its real rows first) starts at `chunk_start[s]` and holds `counts[s] [local]`."""
  ep, local = counts.shape
  i = jnp.arange(num_rows)
  src = jnp.clip(jnp.searchsorted(chunk_start, i, side='right') - 1, 0, ep - 1)
  pos = i - chunk_start[src]
  ends = jnp.cumsum(counts, axis=1)[src]                              # [rows, local]
  expert = jnp.sum(ends <= pos[:, None], axis=1)                      # local = padding
  expert = jnp.where(pos >= 0, expert, local)
  return jnp.argsort(expert, stable=True)


def capacity_rows(claims: int, ep: int, factor: float) -> int:
  """Receive/FFN rows per device for `claims` rows per device on `ep` expert devices:
  `ceil(factor * claims)` rounded up to 8, at most the worst case `ep * claims` (factor <= 0)."""
  worst = ep * claims
  if factor <= 0:
    return worst
  return min(worst, max(8, -(-math.ceil(factor * claims) // 8) * 8))


def _kept(counts, allowed):
  """Per-expert counts `[..., local]` of a chunk whose first `allowed [...]` rows are kept
  (rows are sorted by expert) -> the kept count per expert."""
  before = jnp.cumsum(counts, axis=-1) - counts
  return jnp.clip(allowed[..., None] - before, 0, counts)


def exchange_ffn(rows, sizes, ffn, *, axis, ep, comm_dtype, exchange, compute_dtype,
                 capacity=None):
  """`ffn` applied to each claim on its expert's device: `rows [c, embed]` sorted by global
  expert with `sizes [experts]` (the first `sum(sizes)` rows are real) -> (`[c, embed]` in the
  same order (rows past the real ones, and rows over capacity: 0), `kept [experts]` int32: how
  many of each expert's claims were computed). `exchange`: 'all_to_all' or 'ragged';
  `capacity`: receive rows per device (None = `ep * c`, never over)."""
  c, d = rows.shape
  experts = sizes.shape[0]
  local = experts // ep
  capacity = ep * c if capacity is None else int(capacity)
  me = jax.lax.axis_index(axis)
  per_dest = sizes.reshape(ep, local)
  send_sizes = per_dest.sum(1)                                        # [ep] rows per device
  start = jnp.cumsum(send_sizes) - send_sizes
  rows = rows.astype(comm_dtype)
  if exchange == 'ragged':
    every = jax.lax.all_gather(sizes, axis).reshape(ep, ep, local)   # [source, dest, local]
    moved = every.sum(2)                                              # [source, destination]
    at = jnp.cumsum(moved, 0) - moved                                 # offset in the receiver
    allowed = jnp.clip(capacity - at, 0, moved)                       # rows that fit
    kept_every = _kept(every, allowed)                                # [source, dest, local]
    counts = kept_every[:, me]                                        # [source, local]
    recv_sizes = allowed[:, me]
    chunk_start = jnp.cumsum(recv_sizes) - recv_sizes
    out_off = jnp.minimum(at[me], capacity - 1)                       # my chunk in each receiver
    my_sizes = allowed[me]
    ragged = _ragged_emulated if resolve_backend() == 'cpu' else jax.lax.ragged_all_to_all
    recv = ragged(rows, jnp.zeros((capacity, d), comm_dtype), start, my_sizes, out_off,
                  recv_sizes, axis_name=axis)
    kept = kept_every[me].reshape(experts)
  else:
    chunk = -(-capacity // ep)                                        # rows per (source, dest)
    capacity = ep * chunk
    dest = jnp.searchsorted(jnp.cumsum(send_sizes), jnp.arange(c), side='right')
    pos = jnp.arange(c) - start[jnp.minimum(dest, ep - 1)]
    slot = jnp.where((dest < ep) & (pos < chunk), dest * chunk + pos, capacity)
    send = jnp.zeros((capacity, d), comm_dtype).at[slot].set(rows, mode='drop')
    recv = jax.lax.all_to_all(send.reshape(ep, chunk, d), axis, 0, 0).reshape(capacity, d)
    kept_dest = _kept(per_dest, jnp.minimum(send_sizes, chunk))       # [dest, local]
    counts = jax.lax.all_to_all(kept_dest, axis, 0, 0)                # [source, local]
    chunk_start = jnp.arange(ep) * chunk
    kept = kept_dest.reshape(experts)
  order = _local_sort(capacity, chunk_start, counts)
  group_sizes = jax.lax.dynamic_update_slice_in_dim(
      jnp.zeros((experts,), jnp.int32), counts.sum(0).astype(jnp.int32), me * local, 0)
  out = ffn(recv[order].astype(compute_dtype), group_sizes, me * local)
  back = jnp.zeros((capacity, d), comm_dtype).at[order].set(out.astype(comm_dtype))
  if exchange == 'ragged':
    their_off = (jnp.cumsum(moved, 1) - moved)[:, me]                # where each source's rows sat
    ret = ragged(back, jnp.zeros((c, d), comm_dtype), chunk_start, recv_sizes, their_off,
                 my_sizes, axis_name=axis)
    # Rows not sent (padding, overflow) keep the zeros they started with; real rows sit in
    # runs `start[dest] : start[dest] + my_sizes[dest]`.
    dest = jnp.searchsorted(jnp.cumsum(send_sizes), jnp.arange(c), side='right')
    pos = jnp.arange(c) - start[jnp.minimum(dest, ep - 1)]
    sent = (dest < ep) & (pos < my_sizes[jnp.minimum(dest, ep - 1)])
    return jnp.where(sent[:, None], ret, 0), kept
  ret = jax.lax.all_to_all(back.reshape(ep, chunk, d), axis, 0, 0).reshape(capacity, d)
  return ret.at[slot].get(mode='fill', fill_value=0), kept
