"""The parameters of one checkpoint of a run, restored onto the current mesh for evaluation.

Uses the training checkpointer (same structure and shape checks); the whole train state is read
onto the abstract target built from `config`, then only `params` is kept. A `workdir` that is a
params-only export (`python -m mmjax.export --output=...`) is read with `mmjax.core.exports.params_io`
instead, with the same shape checks; its step is the one it was exported from.
"""

from __future__ import annotations

import os

from mmjax.core import checkpointing
from mmjax.core.exports import params_io
from mmjax.evaluate.errors import EvalError
from mmjax.train import state as state_lib


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, 'checkpoints')


def available_steps(workdir: str) -> list[int]:
  """The checkpointed steps of `workdir`, ascending (empty when there are none)."""
  if not os.path.isdir(checkpoint_dir(workdir)):
    return []
  ckpt = checkpointing.Checkpointer(workdir, read_only=True, async_save=False)
  try:
    return ckpt.all_steps()
  finally:
    ckpt.close()


def choose_step(workdir: str, step: int | None = None) -> int:
  """`step` if it was checkpointed, else the latest; EvalError naming what exists otherwise."""
  steps = available_steps(workdir)
  if not steps:
    raise EvalError(f'no checkpoint in {checkpoint_dir(workdir)}: train first '
                    '(python -m mmjax.train --workdir=...) or pass the --workdir of a trained run.')
  if step is None:
    return steps[-1]
  if int(step) not in steps:
    raise EvalError(f'checkpoint step {step} does not exist in {checkpoint_dir(workdir)}; '
                    f'available steps: {", ".join(map(str, steps))}.')
  return int(step)


def _restore_export(config, path: str, mesh, step: int | None):
  exported = params_io.export_step(path)
  if step is not None and int(step) != exported:
    raise EvalError(f'{path} is an export of step {exported}, not {step}: drop --step or pass '
                    'the training workdir.')
  graphdef, abstract_state, _ = state_lib.abstract_train_state(config, mesh)
  params, _ = params_io.load_params(path, abstract_state['params'])
  return exported, graphdef, params


def restore_params(config, workdir: str, mesh, step: int | None = None):
  """-> (step, graphdef, params): the checkpoint's parameters sharded as in training."""
  if not os.path.isdir(checkpoint_dir(workdir)) and params_io.is_params_export(workdir):
    return _restore_export(config, workdir, mesh, step)
  step = choose_step(workdir, step)
  graphdef, abstract_state, _ = state_lib.abstract_train_state(config, mesh)
  ckpt = checkpointing.Checkpointer(workdir, read_only=True, async_save=False)
  try:
    state, _ = ckpt.restore(step, abstract_state)
  finally:
    ckpt.close()
  return step, graphdef, state['params']
