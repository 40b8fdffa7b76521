"""The Mamba-1 selective scan in pure JAX: a chunked associative scan.

  h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        (state [d, n], per example)
  y_t = C_t . h_t + D * u_t

The sequence is cut into chunks of `chunk` steps. Inside a chunk the linear recurrence is one
`jax.lax.associative_scan` over `[batch, chunk, d, n]` (log-depth, parallel); a `lax.scan`
carries the state from chunk to chunk. The chunk body is rematerialised (`jax.checkpoint`), so
the backward pass keeps only the chunk-boundary states `[chunks, batch, d, n]` instead of every
step's state: memory grows with `length * d` like the activations, not `length * d * n`.
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
  n = A.shape[1]
  chunk = max(1, min(int(chunk), l))
  pad = -l % chunk
  f32 = lambda x: x.astype(jnp.float32)
  u32, dt, B32, C32 = f32(u), f32(delta), f32(B), f32(C)
  if pad:
    widths = ((0, 0), (0, pad), (0, 0))
    u32, dt, B32, C32 = (jnp.pad(x, widths) for x in (u32, dt, B32, C32))
  chunks = (l + pad) // chunk
  split = lambda x: jnp.swapaxes(x.reshape(b, chunks, chunk, x.shape[-1]), 0, 1)
  A32 = f32(A)

  @jax.checkpoint
  def body(h, xs):
    u_c, dt_c, b_c, c_c = xs                                  # [b, chunk, d] / [b, chunk, n]
    decay = jnp.exp(dt_c[..., None] * A32)                    # [b, chunk, d, n]
    drive = (dt_c * u_c)[..., None] * b_c[:, :, None, :]      # [b, chunk, d, n]
    a_cum, b_cum = jax.lax.associative_scan(_combine, (decay, drive), axis=1)
    states = a_cum * h[:, None] + b_cum
    y = jnp.einsum('btdn,btn->btd', states, c_c)
    return states[:, -1], y

  h0 = jnp.zeros((b, d, n), jnp.float32)
  _, ys = jax.lax.scan(body, h0, (split(u32), split(dt), split(B32), split(C32)))
  y = jnp.swapaxes(ys, 0, 1).reshape(b, chunks * chunk, d)[:, :l]
  return (y + u32[:, :l] * f32(D)).astype(u.dtype)

