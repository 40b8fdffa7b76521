"""Checkpoints: orbax `CheckpointManager` under `workdir/checkpoints/`.

Each step holds `state` (train state pytree) and `data` (JSON: every task's iterator state and
the AGD position). Saves are asynchronous and atomic (orbax writes a temporary directory and
renames it when committed). Restore goes onto any mesh through an abstract target carrying the
new shardings; a structure or shape mismatch is an error naming the first differing parameter.
A newest checkpoint that cannot be read is reported and the next newest is used.
"""

from __future__ import annotations

import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags

from mmjax import paths

log = logging.getLogger(__name__)

# Replica-parallel saving slices replicated arrays with small jitted programs on the first save
# (one per shape and device), i.e. compilations inside the training loop. mmjax writes each
# array from its first replica instead: no compilation after the loop starts, and FSDP-sharded
# parameters are written in parallel by their owners anyway.
ocp.type_handlers.register_type_handler(
    jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)

# Orbax's barriers between processes (several per save) are a device all-gather by default,
# queued behind the train step; this absl flag makes them coordination-service barriers, so a
# checkpoint step, like any other, runs no device collective besides the train step's own.
if not flags.FLAGS.is_parsed():
  flags.FLAGS(['mmjax', '--experimental_orbax_use_distributed_barrier'], known_only=True)
else:
  flags.FLAGS.experimental_orbax_use_distributed_barrier = True


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
    self.directory = paths.join(paths.resolve(workdir), 'checkpoints')
    self.read_only = read_only
    # A writer removes the `<step>.orbax-checkpoint-tmp*` directories a killed run left behind
    # (in the background; orbax finishes before the first save): they are never restored, and
    # without this they pile up run after run.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=async_save, read_only=read_only,
        create=not read_only, cleanup_tmp_directories=not read_only)
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
    saved = self.saved_structure(step)
    if saved is None:  # a missing state/_METADATA is damage, not a different model
      raise FileNotFoundError(f'checkpoint {self.directory}/{step} has no readable state '
                              'metadata (state/_METADATA): it is incomplete or corrupt.')
    check_compatible(saved, abstract_state, f'checkpoint {self.directory}/{step}')
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
    return out['state'], out['data']

  def restore_latest_good(self, abstract_state):
    """Newest readable checkpoint -> (step, state, data), or None when there is none.

    A shape/structure mismatch is raised (it is the user's config, not a bad file). A step that
    fails to read on any process is reported in one warning and moved aside to `<step>.corrupt`
    (kept for inspection; orbax ignores it, so the step can be written again), and the previous
    one is tried.
    """
    from mmjax.train import distributed
    for step in reversed(self.all_steps()):
      error = None
      try:
        state, data = self.restore(step, abstract_state)
      except CheckpointMismatchError:
        raise
      except Exception as e:  # noqa: BLE001 - any read failure means this step is unusable
        error = e
      if distributed.all_processes(error is None):  # every process must have read its shards
        return step, state, data
      self._set_aside(step, error)
    return None

  def _set_aside(self, step: int, error: Exception | None) -> None:
    """Renames the unreadable step directory out of orbax's sight (read-only: just reports)."""
    path = paths.join(self.directory, str(step))
    reason = (f'{type(error).__name__}: {str(error).strip().splitlines()[0][:160]}'
              if error is not None and str(error).strip() else
              type(error).__name__ if error is not None else 'another process could not read it')
    if self.read_only:
      log.warning('checkpoint %s is incomplete or corrupt (%s); trying the previous one.', path,
                  reason)
      return
    if jax.process_index() == 0:
      aside, n = f'{path}.corrupt', 1
      while paths.exists(aside):
        n += 1
        aside = f'{path}.corrupt{n}'
      paths.rename(path, aside)
      log.warning('checkpoint %s is incomplete or corrupt (%s); moved it to %s and trying the '
                  'previous one.', path, reason, aside.rsplit('/', 1)[-1])
    elif error is not None:
      log.warning('checkpoint %s is unreadable on process %d (%s); process 0 moves it aside.',
                  path, jax.process_index(), reason)
    ocp.multihost.sync_global_processes(f'mmjax_set_aside_{step}')
    self.manager.reload()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
