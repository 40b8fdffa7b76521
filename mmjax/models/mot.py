"""Mixture-of-Transformers (Liang et al. 2024): modality-specific weights, global attention.

Every block holds one set of norms, QKV / output projections and MLP per modality, stacked on a
leading `[modalities, ...]` axis. Each token uses its modality's weights (tokens are sorted by
modality and multiplied by a grouped matmul, `mmjax.kernels.ragged_matmul`, so the FLOPs equal
one dense block; on a mesh each device sorts its own examples); self-attention runs over the
whole sequence, across modalities. A sequence of one modality (`modality_ids` a Python int, as
`Model.encode` passes) takes the fast path: that modality's weights in plain matmuls, no sort,
partitioned by GSPMD like a dense layer's (weights split on embed/heads/mlp as fsdp/tensor).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.core.partitioning import constrain
from mmjax.models.attention import attend
from mmjax.models.grouped import grouped_matmul, per_example_shards
from mmjax.models.layers import dense_general_init, layer_norm, param, stacked


class ModalityNorm(nnx.Module):
  """LayerNorm (float32) with per-modality `scale, bias [modalities, features]`."""

  def __init__(self, modalities: int, features: int, *, rngs, axis_name='embed', dtype):
    self.scale = param(rngs, nnx.initializers.ones, (modalities, features), (None, axis_name))
    self.bias = param(rngs, nnx.initializers.zeros, (modalities, features), (None, axis_name))
    self.dtype = dtype

  def __call__(self, x: jax.Array, ids) -> jax.Array:
    """`x [..., features]`, `ids` int of shape `x.shape[:-1]` (or broadcastable), or one
    Python int for every token."""
    return layer_norm(x, self.scale[...][ids], self.bias[...][ids], self.dtype)


class ModalityDense(nnx.Module):
  """Per-modality `kernel [modalities, *in_shape, *out_shape]` and `bias [modalities, *out]`,
  each modality's slice initialised like the dense layer it replaces (`init`)."""

  def __init__(self, modalities: int, in_shape: tuple, out_shape: tuple, axes: tuple, *, rngs,
               dtype, init=None):
    init = init or dense_general_init(len(in_shape), len(out_shape))
    self.kernel = param(rngs, stacked(init), (modalities,) + in_shape + out_shape, (None,) + axes)
    self.bias = param(rngs, nnx.initializers.zeros, (modalities,) + out_shape,
                      (None,) + axes[len(in_shape):])
    self.out_shape, self.dtype = out_shape, dtype

  def __call__(self, x: jax.Array, ids, impl: str) -> jax.Array:
    """`x [batch, length, *in_shape]`, `ids [batch, length]` -> `[batch, length, *out_shape]`:
    tokens sorted by modality (per device on a mesh) go through one grouped matmul; with `ids`
    a Python int, a plain matmul with that modality's weights."""
    m = self.kernel.shape[0]
    if isinstance(ids, int):
      kernel = self.kernel[...][ids].astype(self.dtype)         # [*in_shape, *out_shape]
      n_in = kernel.ndim - len(self.out_shape)
      return (jnp.tensordot(x.astype(self.dtype), kernel, axes=n_in)
              + self.bias[...][ids].astype(self.dtype))
    kernel = self.kernel[...].astype(self.dtype).reshape(m, -1, math.prod(self.out_shape))
    bias = self.bias[...].astype(self.dtype).reshape(m, -1)

    def local(x, ids, kernel, bias):
      rows = x.reshape(ids.size, -1).astype(self.dtype)
      flat = ids.reshape(-1)
      order = jnp.argsort(flat, stable=True)
      sizes = jnp.zeros((m,), jnp.int32).at[flat].add(1)
      y = grouped_matmul(rows[order], kernel, sizes, impl) + bias[flat[order]]
      y = jnp.zeros_like(y).at[order].set(y)
      return y.reshape(ids.shape + self.out_shape)
    return per_example_shards(local, (x, ids), (kernel, bias))


class MotBlock(nnx.Module):
  """Pre-LN block: x + Attn_m(LN_m(x)) with global attention, then x + MLP_m(LN_m(x))."""

  def __init__(self, cfg, modalities: int, *, rngs: nnx.Rngs, dtype):
    m, d, h = modalities, cfg.width, cfg.num_heads
    kv = d // h
    self.impl, self.attention_impl = cfg.moe.impl, cfg.attention_impl
    self.norm1 = ModalityNorm(m, d, rngs=rngs, dtype=dtype)
    self.qkv = ModalityDense(m, (d,), (3, h, kv), ('embed', None, 'heads', 'kv'), rngs=rngs,
                             dtype=dtype)
    self.out = ModalityDense(m, (h, kv), (d,), ('heads', 'kv', 'embed'), rngs=rngs, dtype=dtype)
    qk_norm = lambda: ModalityNorm(m, kv, rngs=rngs, axis_name='kv', dtype=dtype)
    self.q_norm = qk_norm() if cfg.qk_norm else None
    self.k_norm = qk_norm() if cfg.qk_norm else None
    self.norm2 = ModalityNorm(m, d, rngs=rngs, dtype=dtype)
    mlp_init = nnx.initializers.xavier_uniform()                  # as the dense Mlp
    self.wi = ModalityDense(m, (d,), (cfg.mlp_dim,), ('embed', 'mlp'), rngs=rngs, dtype=dtype,
                            init=mlp_init)
    self.wo = ModalityDense(m, (cfg.mlp_dim,), (d,), ('mlp', 'embed'), rngs=rngs, dtype=dtype,
                            init=mlp_init)

  def __call__(self, x: jax.Array, mask: jax.Array, modality_ids: jax.Array) -> jax.Array:
    one = isinstance(modality_ids, int)
    ids = modality_ids if one else modality_ids.astype(jnp.int32)
    qkv = self.qkv(self.norm1(x, ids), ids, self.impl)     # [batch, length, 3, heads, kv]
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if self.q_norm is not None:
      head_ids = ids if one else ids[..., None]
      q, k = self.q_norm(q, head_ids), self.k_norm(k, head_ids)
    names = ('batch', 'length', 'heads', 'kv')
    o = attend(constrain(q, names), constrain(k, names), constrain(v, names), mask,
               self.attention_impl, trailing_padding=one)   # one modality: trailing padding
    x = x + self.out(constrain(o.astype(x.dtype), names), ids, self.impl).astype(x.dtype)
    x = constrain(x, ('batch', 'length', 'embed'))
    y = self.wo(jax.nn.gelu(self.wi(self.norm2(x, ids), ids, self.impl)), ids, self.impl)
    return constrain(x + y.astype(x.dtype), ('batch', 'length', 'embed'))


class MotEncoder(nnx.Module):
  """`tokens [batch, length, embed]`, `mask [batch, length]`, `modality_ids [batch, length]`
  (index into `modalities`; or one Python int: the fast path) -> `([batch, length, embed],
  aux={})`."""

  def __init__(self, cfg, modalities: tuple[str, ...], *, rngs: nnx.Rngs, dtype):
    self.modalities = tuple(modalities)
    self.num_layers = cfg.num_layers
    for i in range(cfg.num_layers):
      setattr(self, f'block_{i}', MotBlock(cfg, len(modalities), rngs=rngs, dtype=dtype))
    self.norm = ModalityNorm(len(modalities), cfg.width, rngs=rngs, dtype=dtype)

  def modality_index(self, modality: str) -> int:
    if modality not in self.modalities:
      raise ValueError(f'the Mixture-of-Transformers encoder has no weights for {modality!r}; '
                       f'it was built for {self.modalities}.')
    return self.modalities.index(modality)

  def __call__(self, x: jax.Array, mask: jax.Array, modality_ids: jax.Array, *, rng=None):
    del rng  # MoT blocks are deterministic
    for i in range(self.num_layers):
      x = getattr(self, f'block_{i}')(x, mask, modality_ids)
    ids = modality_ids if isinstance(modality_ids, int) else modality_ids.astype(jnp.int32)
    return self.norm(x, ids), {}
