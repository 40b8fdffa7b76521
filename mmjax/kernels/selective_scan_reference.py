"""The Mamba-1 selective scan in pure JAX: a chunked associative scan.

  h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        (state [d, n], per example)
  y_t = C_t . h_t + D * u_t

The sequence is cut into chunks of `chunk` steps. Inside a chunk the linear recurrence is one
`jax.lax.associative_scan` over `[batch, chunk, d, n]` (log-depth, parallel); a `lax.scan`
carries the state from chunk to chunk. The backward (`jax.custom_vjp`) keeps only the
chunk-start states `[chunks, batch, d, n]`, recomputes each chunk's states from them and runs
the adjoint recurrence (also linear, so also an associative scan, time-reversed) chunk by chunk
from the end: memory grows with `length * d` like the activations, not `length * d * n`, and
the backward is a few forward passes' work rather than autodiff through the scan tree.
All of it runs in float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def check_scan_args(u, delta, A, B, C, D, name='selective_scan'):
  """Raises a ValueError unless the shapes are u, delta [b, l, d], A [d, n], B, C [b, l, n],
  D [d]."""
  if u.ndim != 3 or delta.shape != u.shape:
    raise ValueError(f'{name}: u and delta must both be [batch, length, d], got {u.shape} and '
                     f'{delta.shape}.')
  b, l, d = u.shape
  if A.ndim != 2 or A.shape[0] != d:
    raise ValueError(f'{name}: A must be [d, n] = [{d}, n], got {A.shape}.')
  n = A.shape[1]
  for label, x in (('B', B), ('C', C)):
    if x.shape != (b, l, n):
      raise ValueError(f'{name}: {label} must be [batch, length, n] = {(b, l, n)}, got '
                       f'{x.shape}.')
  if D.shape != (d,):
    raise ValueError(f'{name}: D must be [d] = [{d}], got {D.shape}.')


def _combine(left, right):
  """(a1, b1) then (a2, b2): h -> a2 * (a1 * h + b1) + b2."""
  a1, b1 = left
  a2, b2 = right
  return a1 * a2, a2 * b1 + b2


# The name of the jitted core below: model-FLOP counting (mmjax/plan/flop_count.py) finds the
# scan in a jaxpr by it and counts its elementwise recurrence, which has no matmul to count.
SCAN_CORE_NAME = 'selective_scan_core'


def selective_scan_reference(u, delta, A, B, C, D, *, chunk: int = 64):
  """`u, delta [b, l, d]`, `A [d, n]`, `B, C [b, l, n]`, `D [d]` -> `y [b, l, d]` in u's dtype.

  The length is padded to whole chunks with delta = 0 (the state passes through unchanged).
  """
  check_scan_args(u, delta, A, B, C, D, 'selective_scan_reference')
  return selective_scan_core(u, delta, A, B, C, D, chunk=int(chunk))


@functools.partial(jax.jit, static_argnames=('chunk',))
def selective_scan_core(u, delta, A, B, C, D, *, chunk: int):
  """The scan itself (arguments checked by `selective_scan_reference`)."""
  b, l, d = u.shape
  chunk = max(1, min(int(chunk), l))
  pad = -l % chunk
  f32 = lambda x: x.astype(jnp.float32)
  u32, dt, B32, C32 = f32(u), f32(delta), f32(B), f32(C)
  if pad:
    widths = ((0, 0), (0, pad), (0, 0))
    u32, dt, B32, C32 = (jnp.pad(x, widths) for x in (u32, dt, B32, C32))
  chunks = (l + pad) // chunk
  split = lambda x: jnp.swapaxes(x.reshape(b, chunks, chunk, x.shape[-1]), 0, 1)
  ys = _chunked_scan(split(u32), split(dt), f32(A), split(B32), split(C32))
  y = jnp.swapaxes(ys, 0, 1).reshape(b, chunks * chunk, d)[:, :l]
  return (y + u32[:, :l] * f32(D)).astype(u.dtype)


def _chunk_states(h, u_c, dt_c, b_c, A):
  """States `[b, chunk, d, n]` of one chunk from its start state `h [b, d, n]`, and decays."""
  decay = jnp.exp(dt_c[..., None] * A)                        # [b, chunk, d, n]
  drive = (dt_c * u_c)[..., None] * b_c[:, :, None, :]        # [b, chunk, d, n]
  a_cum, b_cum = jax.lax.associative_scan(_combine, (decay, drive), axis=1)
  return a_cum * h[:, None] + b_cum, decay


def _forward(u, dt, A, B, C):
  """Chunked inputs `[chunks, b, chunk, .]` -> (y without the D term, chunk start states)."""
  def body(h, xs):
    u_c, dt_c, b_c, c_c = xs
    states, _ = _chunk_states(h, u_c, dt_c, b_c, A)
    return states[:, -1], (jnp.einsum('btdn,btn->btd', states, c_c), h)

  h0 = jnp.zeros((u.shape[1], u.shape[3], A.shape[1]), jnp.float32)
  _, (ys, starts) = jax.lax.scan(body, h0, (u, dt, B, C))
  return ys, starts


@jax.custom_vjp
def _chunked_scan(u, dt, A, B, C):
  return _forward(u, dt, A, B, C)[0]


def _chunked_scan_fwd(u, dt, A, B, C):
  ys, starts = _forward(u, dt, A, B, C)
  return ys, (u, dt, A, B, C, starts)


def _chunked_scan_bwd(res, dys):
  """The adjoint recurrence dh_t = exp(dt_{t+1} A) dh_{t+1} + C_t dy_t, chunk by chunk from
  the end (itself an associative scan, over the time-reversed chunk); each chunk's states are
  recomputed from its saved start state."""
  u, dt, A, B, C, starts = res
  # the decay of each chunk's successor's first step (the last chunk has none: carry is 0)
  dt_next = jnp.concatenate([dt[1:, :, 0], jnp.zeros_like(dt[0, :, 0])[None]], 0)

  def body(dh_next, xs):
    u_c, dt_c, b_c, c_c, h0, dy_c, dt_n = xs
    states, decay = _chunk_states(h0, u_c, dt_c, b_c, A)
    h_prev = jnp.concatenate([h0[:, None], states[:, :-1]], 1)
    alpha = jnp.concatenate([decay[:, 1:], jnp.exp(dt_n[..., None] * A)[:, None]], 1)
    inject = c_c[:, :, None, :] * dy_c[..., None]
    a_cum, b_cum = jax.lax.associative_scan(_combine, (alpha[:, ::-1], inject[:, ::-1]), axis=1)
    dh = (a_cum * dh_next[:, None] + b_cum)[:, ::-1]            # [b, chunk, d, n]
    dhb = jnp.einsum('btdn,btn->btd', dh, b_c)
    g = dh * h_prev * decay
    grads = (dhb * dt_c,                                        # du (without D dy)
             jnp.einsum('btdn,dn->btd', g, A) + dhb * u_c,      # ddt
             jnp.einsum('btdn,btd->dn', g, dt_c),               # dA (this chunk's part)
             jnp.einsum('btdn,btd->btn', dh, dt_c * u_c),       # dB
             jnp.einsum('btdn,btd->btn', states, dy_c))         # dC
    return dh[:, 0], grads

  zero = jnp.zeros_like(starts[0])
  _, (du, ddt, da, db, dc) = jax.lax.scan(body, zero, (u, dt, B, C, starts, dys, dt_next),
                                          reverse=True)
  return du, ddt, da.sum(0), db, dc


_chunked_scan.defvjp(_chunked_scan_fwd, _chunked_scan_bwd)
