"""Mamba (selective state-space) token mixers: a layer choice of the encoder beside attention.

`model.layer_types` names each block's token mixer, e.g. `('mamba', 'mamba', 'attention')`,
repeated over `num_layers`; a Mamba block is `x + Mamba(LN(x))` then the block's usual MLP.
The mixer (Gu & Dao 2023, bidirectional as in Vision Mamba):

  x, z   = in_proj(x)                                 [b, l, expand * width] each
  per direction (forward, and backward over the reversed sequence):
    u      = silu(causal depthwise conv_k(x))
    dt, B, C = x_proj(u)                              [b, l, dt_rank], [b, l, n], [b, l, n]
    delta  = softplus(dt_proj(dt))                    [b, l, expand * width]
    y_dir  = selective_scan(u, delta, -exp(A_log), B, C, D)
  out    = out_proj((y_fwd + y_bwd) * silu(z))

Padding (mask 0) is ignored: the conv input is zeroed there and delta is 0 there, so the state
passes padded steps unchanged and nothing of a padded token's value reaches a real token's
output, in either direction. The inner channels are named 'mlp' (sharded on the tensor axis,
like the MLP's hidden units); the selective scan is elementwise over channels, so it needs no
communication (on a mesh the Pallas kernel runs in `shard_map` over batch and channels).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import PartitionSpec as P

from mmjax import kernels
from mmjax.core import partitioning
from mmjax.core.partitioning import constrain
from mmjax.models.layers import Dense, DenseGeneral, param
from mmjax.config.defaults import setting

LAYER_TYPES = ('attention', 'mamba')


def selective_scan(u, delta, A, B, C, D, *, impl: str = 'auto', chunk: int | None = None):
  """`u [b, l, d]`, `delta [b, l, d]`, `A [d, n]`, `B [b, l, n]`, `C [b, l, n]`, `D [d]` ->
  `y [b, l, d]`: Mamba-1's discretised recurrence

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,   y_t = C_t . h_t + D u_t

  (h_0 = 0, state `[d, n]` per example), by `impl` ('auto' | 'xla' | 'pallas', see
  `mmjax.kernels.select`). On a mesh the Pallas kernel runs per device over its examples and
  channels (`shard_map`); the XLA reference is partitioned by GSPMD.
  """
  if kernels.resolve_impl(impl, kernels.SCAN_IMPLS) == 'xla' or kernels.backend.use_reference():
    return kernels.selective_scan(u, delta, A, B, C, D, impl='xla', chunk=chunk)
  fn = lambda u, delta, A, B, C, D: kernels.selective_scan(u, delta, A, B, C, D, impl=impl,
                                                           chunk=chunk)
  ctx = partitioning.current_context()
  if ctx is None:
    return fn(u, delta, A, B, C, D)
  mesh, rules = ctx
  seq = partitioning.logical_to_spec(('batch', 'length', 'mlp'), rules, mesh, u.shape)
  seq = P(seq[0], None, seq[2])
  cols = P(seq[0], None, None)
  return jax.shard_map(fn, mesh=mesh, in_specs=(seq, seq, P(seq[2], None), cols, cols,
                                                P(seq[2])),
                       out_specs=seq, check_vma=False)(u, delta, A, B, C, D)


def layer_kinds(cfg) -> tuple[str, ...]:
  """Each block's token mixer: `cfg.layer_types` repeated over `cfg.num_layers` (empty: all
  attention). Raises a ValueError naming an unknown type."""
  types = tuple(setting(cfg, 'model.layer_types') or ())
  bad = [t for t in types if t not in LAYER_TYPES]
  if bad:
    raise ValueError(f'config.model.layer_types has {bad}; each must be one of '
                     f'{", ".join(LAYER_TYPES)}.')
  if not types:
    return ('attention',) * cfg.num_layers
  return tuple(types[i % len(types)] for i in range(cfg.num_layers))


def mamba_dims(cfg) -> tuple[int, int, int, int]:
  """(inner channels, state size n, dt rank, conv width) of `cfg.mamba` for width `cfg.width`."""
  mc = cfg.mamba
  rank = mc.dt_rank or math.ceil(cfg.width / 16)
  return mc.expand * cfg.width, mc.state, rank, mc.conv


def _dt_bias_init(dt_min=1e-3, dt_max=1e-1):
  """softplus^-1 of a log-uniform step size in [dt_min, dt_max], per channel (Mamba's init)."""
  def init(key, shape, dtype=jnp.float32):
    dt = jnp.exp(jax.random.uniform(key, shape, dtype) * (math.log(dt_max) - math.log(dt_min))
                 + math.log(dt_min))
    return dt + jnp.log(-jnp.expm1(-dt))
  return init


def _a_log_init(key, shape, dtype=jnp.float32):
  """S4D-real: A = -(1, 2, ..., n) for every channel, stored as log(-A)."""
  del key
  return jnp.broadcast_to(jnp.log(jnp.arange(1, shape[-1] + 1, dtype=dtype)), shape)


def causal_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """Depthwise causal conv: `x [b, l, c]`, `kernel [k, c]`, `bias [c]` -> `[b, l, c]` with
  `y_t = bias + sum_j kernel[j] * x_{t - k + 1 + j}` (zeros before the start)."""
  k, length = kernel.shape[0], x.shape[1]
  xp = jnp.pad(x, ((0, 0), (k - 1, 0), (0, 0)))
  y = bias + sum(xp[:, j:j + length] * kernel[j] for j in range(k))
  return y.astype(x.dtype)


class ScanBranch(nnx.Module):
  """One direction's conv, projections and state-space parameters (shared per direction
  across tokens); `__call__(x [b, l, inner], keep [b, l, 1]) -> y [b, l, inner]`."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    inner, n, rank, k = mamba_dims(cfg)
    self.rank, self.n, self.dtype = rank, n, dtype
    self.impl, self.chunk = cfg.mamba.impl, cfg.mamba.chunk or None
    bound = 1.0 / math.sqrt(k)
    self.conv_kernel = param(rngs, nnx.initializers.uniform(2 * bound), (k, inner),
                             (None, 'mlp'))
    self.conv_bias = param(rngs, nnx.initializers.zeros, (inner,), ('mlp',))
    self.x_proj = Dense(inner, rank + 2 * n, ('mlp', None), rngs=rngs, dtype=dtype,
                        use_bias=False)
    self.dt_proj = Dense(rank, inner, (None, 'mlp'), rngs=rngs, dtype=dtype,
                         kernel_init=nnx.initializers.uniform(2 * rank ** -0.5))
    self.dt_proj.bias = param(rngs, _dt_bias_init(), (inner,), ('mlp',))
    self.A_log = param(rngs, _a_log_init, (inner, n), ('mlp', None))
    self.D = param(rngs, nnx.initializers.ones, (inner,), ('mlp',))

  def project(self, u: jax.Array, keep: jax.Array):
    """Conv output `u` -> (delta [b, l, inner] float32, B, C [b, l, n]); delta 0 at padding."""
    dbc = self.x_proj(u)
    dt, B, C = jnp.split(dbc, [self.rank, self.rank + self.n], axis=-1)
    delta = jax.nn.softplus(self.dt_proj(dt).astype(jnp.float32)) * keep
    return delta, B, C

  def __call__(self, x: jax.Array, keep: jax.Array) -> jax.Array:
    conv = causal_conv(x, self.conv_kernel[...].astype(x.dtype),
                       self.conv_bias[...].astype(x.dtype))
    u = constrain(jax.nn.silu(conv), ('batch', 'length', 'mlp'))
    delta, B, C = self.project(u, keep)
    A = -jnp.exp(self.A_log[...])
    y = selective_scan(u, delta, A, B, C, self.D[...], impl=self.impl, chunk=self.chunk)
    return constrain(y, ('batch', 'length', 'mlp'))


class MambaMixer(nnx.Module):
  """`[batch, length, embed]`, `mask [batch, length]` -> `[batch, length, embed]` (see the
  module docstring); `bidirectional=False` keeps only the forward (causal) scan."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    inner = mamba_dims(cfg)[0]
    self.in_proj = DenseGeneral((cfg.width,), (2, inner), ('embed', None, 'mlp'), rngs=rngs,
                                dtype=dtype, use_bias=False)
    self.forward = ScanBranch(cfg, rngs=rngs, dtype=dtype)
    self.backward = (ScanBranch(cfg, rngs=rngs, dtype=dtype) if cfg.mamba.bidirectional
                     else None)
    self.out_proj = Dense(inner, cfg.width, ('mlp', 'embed'), rngs=rngs, dtype=dtype,
                          use_bias=False)

  def mix(self, x: jax.Array, z: jax.Array, mask: jax.Array) -> jax.Array:
    """The scans and the gate: inner `x, z [b, l, inner]` -> gated `[b, l, inner]`."""
    keep = mask.astype(jnp.float32)[..., None]
    x = x * keep.astype(x.dtype)                 # padded values never enter the conv
    y = self.forward(x, keep)
    if self.backward is not None:
      y = y + self.backward(x[:, ::-1], keep[:, ::-1])[:, ::-1]
    return y.astype(z.dtype) * jax.nn.silu(z)

  def __call__(self, x: jax.Array, mask: jax.Array, region_size=None) -> jax.Array:
    del region_size  # regions belong to routed attention
    xz = self.in_proj(x)                         # [batch, length, 2, inner]
    xs = constrain(xz[:, :, 0], ('batch', 'length', 'mlp'))
    z = constrain(xz[:, :, 1], ('batch', 'length', 'mlp'))
    return self.out_proj(self.mix(xs, z, mask))
