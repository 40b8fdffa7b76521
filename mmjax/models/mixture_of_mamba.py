"""Mixture-of-Mamba (Liang et al. 2025): Mamba blocks whose projections are modality-specific.

The Mamba layers (`model.layer_types`) of a Mixture-of-Transformers encoder
(`model.moe.mixture_of_transformers`) become Mixture-of-Mamba blocks: the input projection, the
x (dt, B, C) projection, the dt projection, the output projection, the norms and the MLP are one
per modality (`ModalityDense`: tokens sorted by modality through one grouped matmul in fused
sequences; a plain matmul with one modality's weights when `modality_ids` is a Python int,
exactly as MoT), while the depthwise conv, A, D and the selective scan itself are shared: the
scan runs over the whole fused sequence, across modalities, as MoT's attention does. Per token
the FLOPs equal a dense Mamba block's. Attention layers of the same encoder stay MoT blocks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.core.partitioning import constrain
from mmjax.models.layers import param, stacked
from mmjax.models.mamba import (_a_log_init, _dt_bias_init, causal_conv, layer_kinds,
                                mamba_dims, selective_scan)
from mmjax.models.mot import ModalityDense, ModalityNorm, MotBlock, MotEncoder


class ModalityScanBranch(nnx.Module):
  """One scan direction: per-modality x / dt projections, shared conv, A_log and D."""

  def __init__(self, cfg, modalities: int, *, rngs: nnx.Rngs, dtype):
    inner, n, rank, k = mamba_dims(cfg)
    self.rank, self.n, self.moe_impl = rank, n, cfg.moe.impl
    self.impl, self.chunk = cfg.mamba.impl, cfg.mamba.chunk or None
    bound = k ** -0.5
    self.conv_kernel = param(rngs, nnx.initializers.uniform(2 * bound), (k, inner),
                             (None, 'mlp'))
    self.conv_bias = param(rngs, nnx.initializers.zeros, (inner,), ('mlp',))
    self.x_proj = ModalityDense(modalities, (inner,), (rank + 2 * n,), ('mlp', None), rngs=rngs,
                                dtype=dtype)
    self.dt_proj = ModalityDense(modalities, (rank,), (inner,), (None, 'mlp'), rngs=rngs,
                                 dtype=dtype, init=nnx.initializers.uniform(2 * rank ** -0.5))
    self.dt_proj.bias = param(rngs, stacked(_dt_bias_init()), (modalities, inner), (None, 'mlp'))
    self.A_log = param(rngs, _a_log_init, (inner, n), ('mlp', None))
    self.D = param(rngs, nnx.initializers.ones, (inner,), ('mlp',))

  def __call__(self, x: jax.Array, keep: jax.Array, ids) -> jax.Array:
    conv = causal_conv(x, self.conv_kernel[...].astype(x.dtype),
                       self.conv_bias[...].astype(x.dtype))
    u = constrain(jax.nn.silu(conv), ('batch', 'length', 'mlp'))
    dbc = self.x_proj(u, ids, self.moe_impl)
    dt, B, C = jnp.split(dbc, [self.rank, self.rank + self.n], axis=-1)
    dt = self.dt_proj(dt, ids, self.moe_impl).astype(jnp.float32)
    delta = jax.nn.softplus(dt) * keep
    y = selective_scan(u, delta, -jnp.exp(self.A_log[...]), B, C, self.D[...], impl=self.impl,
                       chunk=self.chunk)
    return constrain(y, ('batch', 'length', 'mlp'))


class MomMixer(nnx.Module):
  """`x [b, l, embed]`, `mask [b, l]`, `ids` -> `[b, l, embed]`: MambaMixer with per-modality
  projections (bidirectional unless `cfg.mamba.bidirectional` is False)."""

  def __init__(self, cfg, modalities: int, *, rngs: nnx.Rngs, dtype):
    inner = mamba_dims(cfg)[0]
    self.impl = cfg.moe.impl
    self.in_proj = ModalityDense(modalities, (cfg.width,), (2, inner), ('embed', None, 'mlp'),
                                 rngs=rngs, dtype=dtype)
    self.forward = ModalityScanBranch(cfg, modalities, rngs=rngs, dtype=dtype)
    self.backward = (ModalityScanBranch(cfg, modalities, rngs=rngs, dtype=dtype)
                     if cfg.mamba.bidirectional else None)
    self.out_proj = ModalityDense(modalities, (inner,), (cfg.width,), ('mlp', 'embed'),
                                  rngs=rngs, dtype=dtype)

  def __call__(self, x: jax.Array, mask: jax.Array, ids) -> jax.Array:
    xz = self.in_proj(x, ids, self.impl)
    xs = constrain(xz[:, :, 0], ('batch', 'length', 'mlp'))
    z = constrain(xz[:, :, 1], ('batch', 'length', 'mlp'))
    keep = mask.astype(jnp.float32)[..., None]
    xs = xs * keep.astype(xs.dtype)
    y = self.forward(xs, keep, ids)
    if self.backward is not None:
      rev_ids = ids if isinstance(ids, int) else ids[:, ::-1]
      y = y + self.backward(xs[:, ::-1], keep[:, ::-1], rev_ids)[:, ::-1]
    y = y.astype(z.dtype) * jax.nn.silu(z)
    return self.out_proj(y, ids, self.impl)


class MomBlock(nnx.Module):
  """x + MoM(LN_m(x)) over the whole sequence, then x + MLP_m(LN_m(x)) (MoT's MLP)."""

  def __init__(self, cfg, modalities: int, *, rngs: nnx.Rngs, dtype):
    m, d = modalities, cfg.width
    self.impl = cfg.moe.impl
    self.norm1 = ModalityNorm(m, d, rngs=rngs, dtype=dtype)
    self.mamba = MomMixer(cfg, m, rngs=rngs, dtype=dtype)
    self.norm2 = ModalityNorm(m, d, rngs=rngs, dtype=dtype)
    mlp_init = nnx.initializers.xavier_uniform()
    self.wi = ModalityDense(m, (d,), (cfg.mlp_dim,), ('embed', 'mlp'), rngs=rngs, dtype=dtype,
                            init=mlp_init)
    self.wo = ModalityDense(m, (cfg.mlp_dim,), (d,), ('mlp', 'embed'), rngs=rngs, dtype=dtype,
                            init=mlp_init)

  def __call__(self, x: jax.Array, mask: jax.Array, modality_ids) -> jax.Array:
    ids = modality_ids if isinstance(modality_ids, int) else modality_ids.astype(jnp.int32)
    x = x + self.mamba(self.norm1(x, ids), mask, ids).astype(x.dtype)
    x = constrain(x, ('batch', 'length', 'embed'))
    y = self.wo(jax.nn.gelu(self.wi(self.norm2(x, ids), ids, self.impl)), ids, self.impl)
    return constrain(x + y.astype(x.dtype), ('batch', 'length', 'embed'))


class MixtureOfMambaEncoder(MotEncoder):
  """A MoT encoder whose `layer_types` 'mamba' blocks are Mixture-of-Mamba blocks (same call:
  `(x, mask, modality_ids, rng=None) -> (x, {})`)."""

  def __init__(self, cfg, modalities: tuple[str, ...], *, rngs: nnx.Rngs, dtype):
    self.modalities = tuple(modalities)
    self.num_layers = cfg.num_layers
    for i, kind in enumerate(layer_kinds(cfg)):
      block = MomBlock if kind == 'mamba' else MotBlock
      setattr(self, f'block_{i}', block(cfg, len(modalities), rngs=rngs, dtype=dtype))
    self.norm = ModalityNorm(len(modalities), cfg.width, rngs=rngs, dtype=dtype)
