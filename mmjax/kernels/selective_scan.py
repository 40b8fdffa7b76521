"""The Mamba-1 selective scan as a Pallas kernel, forward and backward (`jax.custom_vjp`).

One program per (example, block of `block_d` channels) walks the whole sequence, keeping the
state `[n, block_d]` in registers/VMEM (channels on the lane axis): chunks of `chunk` steps in
a `fori_loop`, the steps of a chunk unrolled. The forward writes `y` and the state at the start
of every chunk; the backward walks the chunks in reverse, recomputes each chunk's states from
its saved start state, and runs the adjoint recurrence

  dh_t    = dh_{t+1} * exp(delta_{t+1} A) + C_t dy_t
  du_t    = D dy_t + delta_t (B_t . dh_t)
  ddelta_t = sum_n dh_t h_{t-1} exp(delta_t A) A + u_t (B_t . dh_t)
  dA     += dh_t h_{t-1} exp(delta_t A) delta_t,   dB_t = sum_d dh_t delta_t u_t,
  dC_t    = sum_d h_t dy_t,                          dD  += dy_t u_t

so memory is the inputs plus `[chunks, n, d]` states per example, never `[length, d, n]`.
dB, dC (summed over channels) and dA, dD (summed over examples and steps) leave the kernel as
per-block partial sums and are added up outside. Every tile is loaded with `pl.ds` row/column
slices, no reshapes, so one body serves interpret mode (CPU, the tests), Triton (GPU) and Mosaic
(TPU). Each program holds its example's whole sequence of `block_d` channels: on TPU that
bounds the length by VMEM (about 4k steps at block_d=128); the pure-JAX reference has no bound.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from mmjax.kernels import backend as backend_lib
from mmjax.kernels.selective_scan_reference import check_scan_args


@dataclasses.dataclass(frozen=True)
class ScanTiling:
  chunk: int        # steps per unrolled chunk (the backward's recompute unit)
  block_d: int      # channels per program
  interpret: bool


def _load_step(u_ref, dt_ref, bt_ref, ct_ref, t):
  """Step t's u, delta `[1, block_d]` and B, C `[n, 1]`, in float32."""
  f32 = lambda x: x.astype(jnp.float32)
  return (f32(u_ref[pl.ds(t, 1), :]), f32(dt_ref[pl.ds(t, 1), :]),
          f32(bt_ref[:, pl.ds(t, 1)]), f32(ct_ref[:, pl.ds(t, 1)]))


def _forward_kernel(u_ref, dt_ref, at_ref, bt_ref, ct_ref, d_ref, y_ref, hs_ref, *, t):
  a_t = at_ref[...].astype(jnp.float32)                       # [n, block_d]
  d_row = d_ref[...].astype(jnp.float32)                      # [1, block_d]

  def chunk(c, h):
    hs_ref[c] = h
    for s in range(t.chunk):
      step = c * t.chunk + s
      u, dt, b, cc = _load_step(u_ref, dt_ref, bt_ref, ct_ref, step)
      h = jnp.exp(dt * a_t) * h + b * (dt * u)
      y = jnp.sum(h * cc, axis=0, keepdims=True) + d_row * u
      y_ref[pl.ds(step, 1), :] = y.astype(y_ref.dtype)
    return h

  lax.fori_loop(0, hs_ref.shape[0], chunk, jnp.zeros(a_t.shape, jnp.float32))


def _backward_kernel(u_ref, dt_ref, at_ref, bt_ref, ct_ref, d_ref, hs_ref, dy_ref,
                     du_ref, ddt_ref, dat_ref, dbt_ref, dct_ref, dd_ref, *, t):
  a_t = at_ref[...].astype(jnp.float32)
  d_row = d_ref[...].astype(jnp.float32)
  chunks = hs_ref.shape[0]

  def chunk(k, carry):
    dh, da_acc, dd_acc = carry
    c = chunks - 1 - k
    h = hs_ref[c].astype(jnp.float32)
    steps = []
    for s in range(t.chunk):                                  # recompute the chunk's states
      step = c * t.chunk + s
      u, dt, b, cc = _load_step(u_ref, dt_ref, bt_ref, ct_ref, step)
      decay = jnp.exp(dt * a_t)
      h_prev, h = h, decay * h + b * (dt * u)
      steps.append((step, u, dt, b, cc, decay, h_prev, h))
    for step, u, dt, b, cc, decay, h_prev, h in reversed(steps):
      dy = dy_ref[pl.ds(step, 1), :].astype(jnp.float32)     # [1, block_d]
      dh = dh + cc * dy
      dct_ref[:, pl.ds(step, 1)] = jnp.sum(h * dy, axis=1, keepdims=True)
      dd_acc = dd_acc + dy * u
      dhb = jnp.sum(dh * b, axis=0, keepdims=True)            # B_t . dh_t  [1, block_d]
      du_ref[pl.ds(step, 1), :] = (dy * d_row + dhb * dt).astype(du_ref.dtype)
      g = dh * h_prev * decay
      ddt = jnp.sum(g * a_t, axis=0, keepdims=True) + dhb * u
      ddt_ref[pl.ds(step, 1), :] = ddt.astype(ddt_ref.dtype)
      da_acc = da_acc + g * dt
      dbt_ref[:, pl.ds(step, 1)] = jnp.sum(dh * (dt * u), axis=1, keepdims=True)
      dh = dh * decay
    return dh, da_acc, dd_acc

  zeros = jnp.zeros(a_t.shape, jnp.float32)
  _, da, dd = lax.fori_loop(0, chunks, chunk, (zeros, zeros, jnp.zeros(d_row.shape, jnp.float32)))
  dat_ref[...] = da
  dd_ref[...] = dd


def _specs(t: ScanTiling, length: int, n: int, chunks: int):
  """BlockSpecs over grid (example i, channel block j) of the kernel-layout operands."""
  seq = pl.BlockSpec((None, length, t.block_d), lambda i, j: (i, 0, j))       # [b, L, d]
  state = pl.BlockSpec((n, t.block_d), lambda i, j: (0, j))                   # [n, d]
  cols = pl.BlockSpec((None, n, length), lambda i, j: (i, 0, 0))              # [b, n, L]
  row = pl.BlockSpec((1, t.block_d), lambda i, j: (0, j))                     # [1, d]
  hs = pl.BlockSpec((None, chunks, n, t.block_d), lambda i, j: (i, 0, 0, j))  # [b, c, n, d]
  return seq, state, cols, row, hs


def _forward(t: ScanTiling, u, dt, at, bt, ct, d_row):
  b, length, d = u.shape
  n, chunks = at.shape[0], length // t.chunk
  seq, state, cols, row, hs = _specs(t, length, n, chunks)
  return pl.pallas_call(
      functools.partial(_forward_kernel, t=t), grid=(b, d // t.block_d),
      in_specs=[seq, seq, state, cols, cols, row], out_specs=[seq, hs],
      out_shape=[jax.ShapeDtypeStruct(u.shape, u.dtype),
                 jax.ShapeDtypeStruct((b, chunks, n, d), jnp.float32)],
      interpret=t.interpret, name='selective_scan_fwd',
  )(u, dt, at, bt, ct, d_row)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan(t: ScanTiling, u, dt, at, bt, ct, d_row):
  return _forward(t, u, dt, at, bt, ct, d_row)[0]


def _scan_fwd(t, u, dt, at, bt, ct, d_row):
  y, hs = _forward(t, u, dt, at, bt, ct, d_row)
  return y, (u, dt, at, bt, ct, d_row, hs)


def _scan_bwd(t, residuals, dy):
  u, dt, at, bt, ct, d_row, hs = residuals
  b, length, d = u.shape
  n, chunks, blocks = at.shape[0], length // t.chunk, d // t.block_d
  seq, state, cols, row, hs_spec = _specs(t, length, n, chunks)
  part_cols = pl.BlockSpec((None, None, n, length), lambda i, j: (i, j, 0, 0))
  part_state = pl.BlockSpec((None, n, t.block_d), lambda i, j: (i, 0, j))
  part_row = pl.BlockSpec((None, 1, t.block_d), lambda i, j: (i, 0, j))
  f32 = jnp.float32
  du, ddt, dat, dbt, dct, dd = pl.pallas_call(
      functools.partial(_backward_kernel, t=t), grid=(b, blocks),
      in_specs=[seq, seq, state, cols, cols, row, hs_spec, seq],
      out_specs=[seq, seq, part_state, part_cols, part_cols, part_row],
      out_shape=[jax.ShapeDtypeStruct(u.shape, u.dtype), jax.ShapeDtypeStruct(dt.shape, dt.dtype),
                 jax.ShapeDtypeStruct((b, n, d), f32),
                 jax.ShapeDtypeStruct((b, blocks, n, length), f32),
                 jax.ShapeDtypeStruct((b, blocks, n, length), f32),
                 jax.ShapeDtypeStruct((b, 1, d), f32)],
      interpret=t.interpret, name='selective_scan_bwd',
  )(u, dt, at, bt, ct, d_row, hs, dy)
  return (du, ddt, dat.sum(0).astype(at.dtype), dbt.sum(1).astype(bt.dtype),
          dct.sum(1).astype(ct.dtype), dd.sum(0).astype(d_row.dtype))


_scan.defvjp(_scan_fwd, _scan_bwd)


def default_block_d(d: int, backend: str) -> int:
  """Channels per program: 128 lanes on TPU, a power of two up to 64 on GPU, up to 128 on CPU."""
  if backend == 'tpu':
    return 128
  if backend == 'gpu':
    return min(64, max(16, backend_lib.next_power_of_2(d)))
  return min(128, d)


def selective_scan_pallas(u, delta, A, B, C, D, *, chunk: int = 16, block_d: int | None = None,
                          interpret: bool | None = None, backend: str | None = None):
  """`u, delta [b, l, d]`, `A [d, n]`, `B, C [b, l, n]`, `D [d]` -> `y [b, l, d]` in u's dtype.

  The length is padded to whole chunks with delta = 0 (the state passes through), the channels
  to whole blocks with zeros; `chunk` steps are unrolled per loop iteration.
  """
  check_scan_args(u, delta, A, B, C, D, 'selective_scan_pallas')
  backend = backend_lib.resolve_backend(backend)
  interpret = backend_lib.resolve_interpret(interpret, backend)
  b, l, d = u.shape
  chunk = max(1, min(int(chunk), l))
  bd = block_d or default_block_d(d, backend)
  if not isinstance(bd, int) or bd <= 0:
    raise ValueError(f'selective_scan_pallas: block_d must be a positive int, got {bd!r}.')
  lp, dp = backend_lib.round_up(l, chunk), backend_lib.round_up(d, bd)
  seq = lambda x: jnp.pad(x, ((0, 0), (0, lp - l), (0, dp - d)))
  cols = lambda x: jnp.swapaxes(jnp.pad(x, ((0, 0), (0, lp - l), (0, 0))), 1, 2)
  at = jnp.pad(jnp.swapaxes(A, 0, 1), ((0, 0), (0, dp - d)))
  d_row = jnp.pad(D, (0, dp - d))[None]
  t = ScanTiling(chunk=chunk, block_d=bd, interpret=interpret)
  y = _scan(t, seq(u), seq(delta), at, cols(B), cols(C), d_row)
  return y[:, :l, :d]
