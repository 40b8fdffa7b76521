"""Sparse upcycling: start an MoE model from a dense checkpoint (Komatsuzaki et al. 2022).

  python -m tools.upcycle --dense_workdir=runs/demo --config=configs/demo_moe.py \
      --workdir=runs/demo_moe_upcycled
  python -m mmjax.train --config=configs/demo_moe.py --workdir=runs/demo_moe_upcycled

Every expert of an MoE layer starts as a copy of the dense layer's MLP (`mlp/wi`, `mlp/wo`
kernels and biases), routers are freshly initialised (seed `config.seed`), every other parameter
is copied, the optimizer state is fresh and the step is 0. The result is a normal checkpoint (plus
config.json) in --workdir that `python -m mmjax.train` resumes from. The dense run's config is read
from `--dense_workdir/config.json`. With top-1 routing and `moe.normalize_combine_weights=True`
the upcycled model computes exactly what the dense one did (each token's weight is 1.0); without
it each MoE layer's MLP output is scaled by the token's router probability.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import zlib

import jax
import jax.numpy as jnp

from mmjax import cli
from mmjax import config as config_lib
from mmjax.core import checkpointing
from mmjax.core.exports import params_io
from mmjax.core import partitioning
from mmjax.models.moe.layer import ROUTER_INIT
from mmjax.train import optimizer as optimizer_lib
from mmjax.train import state as state_lib

_EXPERT_LEAF = re.compile(r'(^|/)mlp/(wi|wo)/(kernel|bias)$')
_ROUTER_LEAF = re.compile(r'(^|/)mlp/router/kernel$')


class UpcycleError(config_lib.ConfigError):
  """The dense checkpoint cannot seed the MoE model; one sentence naming the parameter."""


def _flat(tree) -> dict:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): leaf for path, leaf in leaves}


def upcycle_plan(dense: dict, moe: dict) -> dict[str, str]:
  """`{parameter path: 'copy' | 'tile' | 'fresh'}` from the two models' (abstract) params;
  raises UpcycleError naming the first parameter that does not fit."""
  dense_flat, moe_flat = _flat(dense), _flat(moe)
  plan = {}
  for name, leaf in moe_flat.items():
    src = dense_flat.get(name)
    if src is None and _ROUTER_LEAF.search(name):
      plan[name] = 'fresh'
    elif src is None:
      raise UpcycleError(f'the dense checkpoint has no parameter {name!r}: upcycle from a dense '
                         'run with the same encoder, embeddings and heads.')
    elif tuple(src.shape) == tuple(leaf.shape):
      plan[name] = 'copy'
    elif _EXPERT_LEAF.search(name) and tuple(leaf.shape[1:]) == tuple(src.shape):
      plan[name] = 'tile'
    else:
      raise UpcycleError(f'parameter {name!r} has shape {tuple(src.shape)} in the dense '
                         f'checkpoint but {tuple(leaf.shape)} in the MoE model: use the same '
                         'sizes.')
  unused = sorted(set(dense_flat) - set(moe_flat))
  if unused:
    raise UpcycleError(f'the MoE model has no parameter {unused[0]!r} of the dense checkpoint: '
                       'give both configs the same tasks and encoder.')
  return plan


def upcycle_params(dense: dict, abstract: dict, seed: int = 0) -> dict:
  """Pure dicts -> `abstract`'s structure: expert leaves `[experts, ...]` tiled from the dense
  MLP leaf `[...]`, routers drawn fresh (`moe.ROUTER_INIT`), everything else copied."""
  plan, dense_flat = upcycle_plan(dense, abstract), _flat(dense)
  key = jax.random.key(seed)

  def pick(path, leaf):
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    if plan[name] == 'fresh':
      return ROUTER_INIT(jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF),
                         leaf.shape, leaf.dtype)
    src = dense_flat[name].astype(leaf.dtype)
    return src if plan[name] == 'copy' else jnp.broadcast_to(src[None], leaf.shape)
  return jax.tree_util.tree_map_with_path(pick, abstract)


def combine_weight_warning(config) -> str | None:
  """One sentence when the upcycled model will not start as its dense parent (combine weights
  not normalised), else None."""
  moe = config.model.moe
  if moe.get('normalize_combine_weights', False):
    return None
  return ('warning: config.model.moe.normalize_combine_weights is False, so each upcycled MoE '
          "layer's output is scaled by its tokens' router probabilities and the model does not "
          'start equal to the dense one; set it to True to keep the dense function.')


def upcycle(dense_workdir: str, config, workdir: str, step: int | None = None) -> int:
  """Writes the upcycled train state as step 0 of `workdir`; returns the dense step used."""
  path = os.path.join(dense_workdir, 'config.json')
  if not os.path.isfile(path):
    raise UpcycleError(f'{path} does not exist: pass the --dense_workdir of a training run.')
  with open(path) as f:
    dense_config = config_lib.config_from_json(f.read())
  existing = os.path.join(workdir, 'checkpoints')
  if os.path.isdir(existing) and os.listdir(existing):
    raise UpcycleError(f'{workdir} already holds checkpoints: choose a new --workdir.')
  mesh = partitioning.make_mesh(config.mesh)
  _, dense_abstract, _ = state_lib.abstract_train_state(dense_config, mesh)
  _, abstract, shardings = state_lib.abstract_train_state(config, mesh)
  upcycle_plan(dense_abstract['params'], abstract['params'])
  step, dense_params = _dense_params(dense_workdir, dense_config, dense_abstract, step)
  _write(config, workdir, dense_workdir, step, dense_params, abstract, shardings)
  return step


def _dense_params(dense_workdir: str, dense_config, dense_abstract, step: int | None):
  """(step, params) of the dense run's checkpoint, or of a params-only export (e.g. a CLIP
  imported by tools.import_weights)."""
  if not os.path.isdir(os.path.join(dense_workdir, 'checkpoints')) and \
      params_io.is_params_export(dense_workdir):
    exported = params_io.export_step(dense_workdir)
    if step is not None and step != exported:
      raise UpcycleError(f'{dense_workdir} is an export of step {exported}, not {step}: drop '
                         '--step.')
    return exported, params_io.load_params(dense_workdir, dense_abstract['params'])[0]
  return _checkpoint_params(dense_workdir, dense_abstract, step)


def _checkpoint_params(dense_workdir: str, dense_abstract, step: int | None):
  source = checkpointing.Checkpointer(dense_workdir, read_only=True, async_save=False)
  steps = source.all_steps()
  if not steps:
    raise UpcycleError(f'{dense_workdir} has no checkpoints: train the dense model first.')
  if step is not None and step not in steps:
    raise UpcycleError(f'{dense_workdir} has no checkpoint step {step}: pick one of {steps} '
                       'with --step.')
  step = steps[-1] if step is None else step
  dense_state, _ = source.restore(step, dense_abstract)
  source.close()
  return step, dense_state['params']


def _write(config, workdir: str, dense_workdir: str, step: int, dense_params, abstract,
           shardings) -> None:

  params = jax.jit(lambda d: upcycle_params(d, abstract['params'], config.seed),
                   out_shardings=shardings['params'])(dense_params)
  opt = optimizer_lib.make_optimizer(config.optimizer)
  opt_state = jax.jit(opt.init, out_shardings=shardings['opt_state'])(params)
  step_zero = jax.device_put(jnp.zeros((), jnp.int32), shardings['step'])
  state = {'step': step_zero, 'params': params, 'opt_state': opt_state}

  os.makedirs(workdir, exist_ok=True)
  config_lib.save_config(config, workdir)
  ckpt = checkpointing.Checkpointer(workdir, async_save=False)
  ckpt.save(0, state, {'upcycled_from': {'workdir': dense_workdir, 'step': int(step)}},
            force=True)
  ckpt.close()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m tools.upcycle',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--dense_workdir', required=True, help='workdir of the dense training run, '
                      'or a params-only export (e.g. of tools.import_weights)')
  parser.add_argument('--config', required=True, help='the MoE config: configs/<name>.py[:arg]')
  parser.add_argument('--workdir', required=True, help='new workdir for the upcycled run')
  parser.add_argument('--step', type=int, default=None, help='dense step (default: the latest)')

  def run():
    args, overrides = cli.parse(parser, argv)
    config = config_lib.load_config(args.config, overrides)
    warning = combine_weight_warning(config)
    if warning:
      print(warning, file=sys.stderr)
    step = upcycle(args.dense_workdir, config, args.workdir, args.step)
    print(f'upcycled {args.dense_workdir} step {step} into {args.workdir} (step 0); resume with '
          f'python -m mmjax.train --config={args.config} --workdir={args.workdir}')
  return cli.run(run)


if __name__ == '__main__':
  sys.exit(main())
