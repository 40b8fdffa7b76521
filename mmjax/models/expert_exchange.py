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
"""

from __future__ import annotations

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


def exchange_ffn(rows, sizes, ffn, *, axis, ep, comm_dtype, exchange, compute_dtype):
  """`ffn` applied to each claim on its expert's device: `rows [c, embed]` sorted by global
  expert with `sizes [experts]` (the first `sum(sizes)` rows are real) -> `[c, embed]` in the
  same order (rows past the real ones: 0). `exchange`: 'all_to_all' or 'ragged'."""
  c, d = rows.shape
  experts = sizes.shape[0]
  local = experts // ep
  me = jax.lax.axis_index(axis)
  send_sizes = sizes.reshape(ep, local).sum(1)                       # [ep] rows per device
  start = jnp.cumsum(send_sizes) - send_sizes
  rows = rows.astype(comm_dtype)
  if exchange == 'ragged':
    every = jax.lax.all_gather(sizes, axis)                          # [source, experts]
    counts = jax.lax.dynamic_slice_in_dim(every, me * local, local, axis=1)   # [source, local]
    moved = every.reshape(ep, ep, local).sum(2)                      # [source, destination]
    recv_sizes = moved[:, me]
    chunk_start = jnp.cumsum(recv_sizes) - recv_sizes
    out_off = (jnp.cumsum(moved, 0) - moved)[me]                     # my chunk in each receiver
    ragged = _ragged_emulated if resolve_backend() == 'cpu' else jax.lax.ragged_all_to_all
    recv = ragged(rows, jnp.zeros((ep * c, d), comm_dtype), start, send_sizes, out_off,
                  recv_sizes, axis_name=axis)
  else:
    dest = jnp.searchsorted(jnp.cumsum(send_sizes), jnp.arange(c), side='right')
    slot = jnp.where(dest < ep, dest * c + jnp.arange(c) - start[jnp.minimum(dest, ep - 1)],
                     ep * c)
    send = jnp.zeros((ep * c, d), comm_dtype).at[slot].set(rows, mode='drop')
    recv = jax.lax.all_to_all(send.reshape(ep, c, d), axis, 0, 0).reshape(ep * c, d)
    counts = jax.lax.all_to_all(sizes.reshape(ep, local), axis, 0, 0)   # [source, local]
    chunk_start = jnp.arange(ep) * c
  order = _local_sort(ep * c, chunk_start, counts)
  group_sizes = jax.lax.dynamic_update_slice_in_dim(
      jnp.zeros((experts,), jnp.int32), counts.sum(0).astype(jnp.int32), me * local, 0)
  out = ffn(recv[order].astype(compute_dtype), group_sizes, me * local)
  back = jnp.zeros((ep * c, d), comm_dtype).at[order].set(out.astype(comm_dtype))
  if exchange == 'ragged':
    their_off = (jnp.cumsum(moved, 1) - moved)[:, me]                # where each source's rows sat
    ragged = _ragged_emulated if resolve_backend() == 'cpu' else jax.lax.ragged_all_to_all
    ret = ragged(back, jnp.zeros((c, d), comm_dtype), chunk_start, recv_sizes, their_off,
                 send_sizes, axis_name=axis)
    real = jnp.arange(c) < jnp.sum(send_sizes)
    return jnp.where(real[:, None], ret, 0)
  ret = jax.lax.all_to_all(back.reshape(ep, c, d), axis, 0, 0).reshape(ep * c, d)
  return ret.at[slot].get(mode='fill', fill_value=0)
