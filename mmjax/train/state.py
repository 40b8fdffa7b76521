"""The train state `{'step', 'params', 'opt_state'}` as a pytree, and its shardings.

The NNX model is split once into a graph definition and a pure dict of float32 parameters.
Parameters are created already sharded: `eval_shape` gives shapes and logical axes, then
`jax.jit(init, out_shardings=...)` materialises each shard on its device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.core import partitioning
from mmjax.models.model import build_model
from mmjax.seeds import resolve_seeds
from mmjax.train import optimizer as optimizer_lib


def _abstract_model(config):
  model = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  return graphdef, state


def abstract_params(config) -> dict:
  """The params pytree of `config`'s model as `ShapeDtypeStruct`s (no device memory)."""
  return nnx.to_pure_dict(_abstract_model(config)[1])


def logical_axes(state) -> dict:
  """Pure dict of each parameter's logical axis names."""
  axes = jax.tree.map(lambda v: v.get_metadata().get('logical_axes', (None,) * v.ndim)
                      if hasattr(v, 'get_metadata') else None,
                      state, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return nnx.to_pure_dict(axes)


def _param_shardings(params_abs, axes, mesh, rules):
  return jax.tree.map(lambda p, a: partitioning.named_sharding(mesh, a, rules, p.shape),
                      params_abs, axes, is_leaf=lambda x: isinstance(x, tuple))


def _match_param_sharding(opt_abs, params_abs, param_sh, mesh):
  """Optimizer leaves whose key path ends with a parameter's path get that parameter's sharding
  (Adam's mu and nu); everything else (counts) is replicated."""
  by_path = {tuple(str(getattr(k, 'key', k)) for k in path): (leaf, sh)
             for (path, leaf), sh in zip(jax.tree_util.tree_flatten_with_path(params_abs)[0],
                                         jax.tree.leaves(param_sh))}

  def pick(path, leaf):
    keys = tuple(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)
    for i in range(len(keys)):
      hit = by_path.get(keys[i:])
      if hit is not None and hit[0].shape == leaf.shape:
        return hit[1]
    return partitioning.replicated(mesh)
  return jax.tree_util.tree_map_with_path(pick, opt_abs)


def abstract_train_state(config, mesh):
  """-> (graphdef, abstract_state, state_shardings); abstract leaves carry their shardings."""
  graphdef, state = _abstract_model(config)
  rules = partitioning.rules_from_config(config)
  params_abs = nnx.to_pure_dict(state)
  axes = logical_axes(state)
  param_sh = _param_shardings(params_abs, axes, mesh, rules)
  opt = optimizer_lib.make_optimizer(config.optimizer)
  opt_abs = jax.eval_shape(opt.init, params_abs)
  opt_sh = _match_param_sharding(opt_abs, params_abs, param_sh, mesh)
  shardings = {'step': partitioning.replicated(mesh), 'params': param_sh, 'opt_state': opt_sh}
  abstract = {'step': jax.ShapeDtypeStruct((), jnp.int32),
              'params': params_abs, 'opt_state': opt_abs}
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
  return graphdef, abstract, shardings


def create_train_state(config, mesh, graphdef=None, shardings=None):
  """Initialises parameters and optimizer state directly into their shardings."""
  if shardings is None:
    graphdef, _, shardings = abstract_train_state(config, mesh)
  opt = optimizer_lib.make_optimizer(config.optimizer)

  def init():
    model = build_model(config, nnx.Rngs(params=resolve_seeds(config).init))
    params = nnx.to_pure_dict(nnx.state(model))
    return {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': opt.init(params)}

  return jax.jit(init, out_shardings=shardings)()


def merge(graphdef, params):
  """The NNX model for a pure params dict (inside or outside jit)."""
  return nnx.merge(graphdef, params)
