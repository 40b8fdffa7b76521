"""Small NNX layers whose parameters carry logical axis names (metadata `logical_axes`).

Parameters are float32; `dtype` is the compute dtype (bf16 when the config asks). LayerNorm
always computes in float32.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def param(rngs: nnx.Rngs, init, shape: Sequence[int], logical_axes: Sequence[str | None]
          ) -> nnx.Param:
  """A float32 parameter initialised by `init(key, shape)` with its logical axis names."""
  if len(shape) != len(logical_axes):
    raise ValueError(f'parameter of shape {tuple(shape)} given {len(logical_axes)} axis names.')
  return nnx.Param(init(rngs.params(), tuple(shape), jnp.float32),
                   logical_axes=tuple(logical_axes))


class Dense(nnx.Module):
  """y = x @ kernel + bias over the last axis; kernel [in, out] named `axes`."""

  def __init__(self, in_features: int, out_features: int, axes: tuple[str | None, str | None],
               *, rngs: nnx.Rngs, dtype=jnp.float32, use_bias: bool = True,
               kernel_init=nnx.initializers.xavier_uniform()):
    self.kernel = param(rngs, kernel_init, (in_features, out_features), axes)
    self.bias = (param(rngs, nnx.initializers.zeros, (out_features,), axes[1:])
                 if use_bias else None)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


def dense_general_init(in_axes: int, out_axes: int):
  """Truncated-normal fan-in init for a kernel of `in_axes` input then `out_axes` output dims."""
  return nnx.initializers.variance_scaling(
      1.0, 'fan_in', 'truncated_normal', in_axis=tuple(range(in_axes)),
      out_axis=tuple(range(in_axes, in_axes + out_axes)))


def stacked(init):
  """An initializer for `[n, ...]` that initialises each of the n slices like `init`."""
  def stacked_init(key, shape, dtype=jnp.float32):
    keys = jax.random.split(key, shape[0])
    return jax.vmap(lambda k: init(k, tuple(shape[1:]), dtype))(keys)
  return stacked_init


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, dtype, eps: float = 1e-6):
  """`(x - mean) / std * scale + bias` over the last axis, in float32; returns `dtype`."""
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + eps) * scale + bias).astype(dtype)


class DenseGeneral(nnx.Module):
  """Projects the last axis to several axes, e.g. [.., embed] -> [.., heads, kv], or back."""

  def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
               axes: tuple[str | None, ...], *, rngs: nnx.Rngs, dtype=jnp.float32,
               use_bias: bool = True):
    init = dense_general_init(len(in_shape), len(out_shape))
    self.kernel = param(rngs, init, in_shape + out_shape, axes)
    self.bias = (param(rngs, nnx.initializers.zeros, out_shape, axes[len(in_shape):])
                 if use_bias else None)
    self.n_in = len(in_shape)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel[...].astype(self.dtype)
    contract = (tuple(range(x.ndim - self.n_in, x.ndim)), tuple(range(self.n_in)))
    y = jax.lax.dot_general(x.astype(self.dtype), k, (contract, ((), ())))
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis, in float32; returns `dtype`."""

  def __init__(self, features: int, *, rngs: nnx.Rngs, axis_name: str | None = 'embed',
               dtype=jnp.float32, eps: float = 1e-6):
    self.scale = param(rngs, nnx.initializers.ones, (features,), (axis_name,))
    self.bias = param(rngs, nnx.initializers.zeros, (features,), (axis_name,))
    self.eps = eps
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    return layer_norm(x, self.scale[...], self.bias[...], self.dtype, self.eps)


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-6) -> jax.Array:
  """x / ||x|| in float32."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps * eps))
