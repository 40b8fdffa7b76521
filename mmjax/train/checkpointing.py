"""Checkpoints: orbax `CheckpointManager` under `workdir/checkpoints/`.

Each step holds `state` (train state pytree) and `data` (JSON: every task's iterator state and
the AGD position). Saves are asynchronous and atomic (orbax writes a temporary directory and
renames it when committed). Restore goes onto any mesh through an abstract target carrying the
new shardings; a structure or shape mismatch is an error naming the first differing parameter.
A newest checkpoint that cannot be read is reported and the next newest is used.
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
  """The checkpoint's structure or shapes differ from the model being restored."""


def _path_str(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def _flat_shapes(tree) -> dict[str, tuple]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {_path_str(p): tuple(getattr(v, 'shape', np.shape(v))) for p, v in flat}


def check_compatible(saved_tree, target_tree, what: str = 'checkpoint') -> None:
  """Raises CheckpointMismatchError naming the first parameter present in only one tree or
  with a different shape."""
  saved, target = _flat_shapes(saved_tree), _flat_shapes(target_tree)
  for name in sorted(set(saved) | set(target), key=lambda n: (not n.startswith('params/'), n)):
    if name not in saved:
      raise CheckpointMismatchError(
          f'{what} has no parameter {name!r} that the model expects: it was written by a '
          'different model config; restore it with that config or start a new workdir.')
    if name not in target:
      raise CheckpointMismatchError(
          f'{what} holds {name!r}, which the model does not have: it was written by a '
          'different model config; restore it with that config or start a new workdir.')
    if saved[name] != target[name]:
      raise CheckpointMismatchError(
          f'{what} parameter {name!r} has shape {saved[name]} but the model expects '
          f'{target[name]}: use the config it was trained with.')


class Checkpointer:
  """Saves and restores `(state, data_state)` under `workdir/checkpoints`."""

  def __init__(self, workdir: str, *, keep: int = 3, async_save: bool = True,
               read_only: bool = False):
    self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=async_save, read_only=read_only,
        create=not read_only)
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'data': ocp.JsonCheckpointHandler()})

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, state, data_state: dict, *, force: bool = False) -> bool:
    return self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)), force=force)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def saved_structure(self, step: int):
    """The shapes tree recorded in the checkpoint's metadata (no array is read)."""
    meta = self.manager.item_metadata(step)
    tree = meta['state'] if 'state' in meta else meta
    return getattr(tree, 'tree', tree)

  def restore(self, step: int, abstract_state):
    """Restores step `step` onto the shardings of `abstract_state`; returns (state, data)."""
    check_compatible(self.saved_structure(step), abstract_state,
                     f'checkpoint {self.directory}/{step}')
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    return out['state'], out['data']

  def restore_latest_good(self, abstract_state):
    """Newest readable checkpoint -> (step, state, data), or None when there is none.

    A shape/structure mismatch is raised (it is the user's config, not a bad file); a
    checkpoint that fails to read is reported in one warning and the previous one is tried.
    """
    for step in reversed(self.all_steps()):
      try:
        state, data = self.restore(step, abstract_state)
        return step, state, data
      except CheckpointMismatchError:
        raise
      except Exception as e:  # noqa: BLE001 - any read failure means this step is unusable
        log.warning('checkpoint %s/%d is incomplete or corrupt (%s: %s); trying the previous '
                    'one.', self.directory, step, type(e).__name__, str(e).splitlines()[0][:200])
    return None

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
