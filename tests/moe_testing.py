"""Small MoE layers for tests: a random-initialised layer without compiling initializers, the
demo model's config with MoE knobs, inputs with padding, gradients on a mesh, and a closeness check
relative to the array's scale."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mmjax.core import partitioning
from mmjax.models.moe import layer as moe
from mmjax.train.state import logical_axes
from mmjax_testing import demo_config


def random_module(factory, seed=0, scale=0.2):
  """`factory()`'s module with N(0, scale^2) numpy parameters: skips compiling the random
  initializers, which dominates these small tests on CPU."""
  graphdef, state = nnx.split(nnx.eval_shape(factory))
  rng = np.random.default_rng(seed)
  pure = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) * scale, a.dtype),
                      nnx.to_pure_dict(state))
  nnx.replace_by_pure_dict(state, pure)
  return nnx.merge(graphdef, state)


def layer(cfg, seed=0):
  return random_module(lambda: moe.MoeMlp(cfg, rngs=nnx.Rngs(0), dtype=jnp.float32), seed)


def moe_config(router='tokens_choose', experts=4, top_k=2, cf=1.25, *extra):
  config = demo_config('--config.model.num_layers=2', '--config.model.width=32',
                       '--config.model.mlp_dim=64', f'--config.model.moe.num_experts={experts}',
                       '--config.model.moe.every=2', f'--config.model.moe.top_k={top_k}',
                       f'--config.model.moe.router={router}',
                       f'--config.model.moe.capacity_factor={cf}', *extra)
  return config.model


def inputs(b=4, length=8, d=32, seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(b, length, d)), jnp.float32)
  mask = jnp.asarray(np.arange(length)[None] < rng.integers(3, length + 1, (b, 1)), jnp.int32)
  return x, mask


def grads(cfg, x, mask, sizes, seed=3):
  """(loss, y, d params, d x) of a fixed random cotangent; `sizes` None = no mesh."""
  module = layer(cfg, seed)
  graphdef, state = nnx.split(module)
  params = nnx.to_pure_dict(state)
  ct = jnp.asarray(np.random.default_rng(7).normal(size=x.shape), jnp.float32)
  mesh = None if sizes is None else partitioning.make_mesh(sizes)

  def loss(p, x, m):
    if mesh is None:
      y = nnx.merge(graphdef, p)(x, m)[0]
    else:
      with partitioning.axis_rules(mesh, partitioning.DEFAULT_RULES):
        y = nnx.merge(graphdef, p)(x, m)[0]
    return jnp.sum(y * ct), y

  fn = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))
  if mesh is None:
    (_, y), g = fn(params, x, mask)
    return y, g, None
  rules = partitioning.DEFAULT_RULES
  shard = jax.tree.map(lambda p, a: partitioning.named_sharding(mesh, a, rules, p.shape),
                       params, logical_axes(state), is_leaf=lambda t: isinstance(t, tuple))
  params = jax.device_put(params, shard)
  x, mask = (jax.device_put(a, partitioning.batch_sharding(mesh)) for a in (x, mask))
  (_, y), g = fn(params, x, mask)
  return y, g, fn.lower(params, x, mask).compile().as_text()


def close(a, b, what):
  """Max |a - b| within 1e-5 of the largest |b| (relative to the array's scale)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  scale = max(np.abs(b).max(), 1e-12)
  diff = np.abs(a - b).max()
  assert diff <= 1e-5 * scale, f'{what}: max diff {diff} > 1e-5 x {scale}'
