"""Checkpoints: orbax `CheckpointManager` under `workdir/checkpoints/`.

Each step holds `state` (train state pytree) and `data` (JSON: every task's iterator state and
the AGD position). Saves are asynchronous and atomic (orbax writes a temporary directory and
renames it when committed). Restore goes onto any mesh through an abstract target carrying the
new shardings; a structure or shape mismatch is an error naming the first differing parameter.
Every step records a SHA-256 of each state file (`DigestedStateHandler`, before the commit).
A damaged newest checkpoint (checked the same way on local disks and `gs://`: commit marker,
metadata, digests, read-back) is set aside and the next newest used; an I/O error is retried,
then fails loudly with every checkpoint in place (see `restore_latest_good`). A failed save
(permission, full disk, I/O) is one `StorageError` sentence naming the path and errno (exit 1).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags

from mmjax import paths

from mmjax.core import checkpoint_damage as damage_lib
from mmjax.core import processes
from mmjax.errors import StorageError, UserError, storage_error

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


RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # seconds before each further attempt to read one step


class CheckpointMismatchError(UserError, ValueError):
  """The checkpoint's structure or shapes differ from the model being restored."""


class RestoreFailed(StorageError):
  """No checkpoint could be restored, and none was lost: one sentence saying what to do."""


# TensorStore / orbax texts of storage faults (TensorStore raises ValueError('CODE: ...')).
STORAGE_CODES = ('PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'UNAVAILABLE', 'DEADLINE_EXCEEDED',
                 'UNAUTHENTICATED', 'ABORTED', 'Permission denied', 'No space left', 'Read-only '
                 'file system', 'Input/output error')


def _chain(error: BaseException):
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def is_storage_fault(error: BaseException) -> bool:
  """An OSError (or TimeoutError) somewhere in the cause chain, or a TensorStore status text
  that describes the storage rather than the program."""
  for e in _chain(error):
    if isinstance(e, OSError):
      return True
    if any(code in str(e) for code in STORAGE_CODES):
      return True
  return False


def _fault_path(error: BaseException) -> str | None:
  for e in _chain(error):
    if isinstance(e, OSError) and e.filename:
      return str(e.filename)
  return None


def _reason(error: BaseException | None) -> str:
  if error is None:
    return 'another process could not read it'
  text = str(error).strip()
  return f'{type(error).__name__}: {text.splitlines()[0][:160]}' if text else type(error).__name__


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


def check_resumable(workdir: str, abstract_state) -> bool:
  """Whether `workdir` holds checkpoints (or damaged ones set aside) to resume from. Raises
  CheckpointMismatchError when the newest one whose metadata reads was written by a model of
  another structure or shape. Reads metadata only and writes nothing: it runs before anything
  is written to the workdir."""
  if not paths.exists(paths.join(paths.resolve(workdir), 'checkpoints')):
    return False
  ckpt = Checkpointer(workdir, read_only=True, async_save=False)
  try:
    steps = ckpt.all_steps()
    for step in reversed(steps):
      try:
        saved = ckpt.saved_structure(step)
      except Exception:  # noqa: BLE001 - unreadable metadata is the restore's business
        continue
      if saved is not None:
        check_compatible(saved, abstract_state, f'checkpoint {ckpt.directory}/{step}')
        break
    return bool(steps or ckpt.set_aside_steps())
  finally:
    ckpt.close()


class DigestedStateHandler(ocp.StandardCheckpointHandler):
  """orbax's handler for the train state, plus a SHA-256 of every file it wrote, recorded in
  `state/mmjax_digests.json`. `finalize` runs on the primary process once every process has
  written its arrays (the OCDBT files are merged first) and before orbax commits the step, so a
  committed step always carries its digests; restore checks them (`checkpoint_damage.py`)."""

  def finalize(self, directory) -> None:
    super().finalize(directory)
    damage_lib.write_digests(str(directory))


@ocp.args.register_with_handler(DigestedStateHandler, for_save=True)
class DigestedSave(ocp.args.StandardSave):
  """`StandardSave` for `DigestedStateHandler`."""


@ocp.args.register_with_handler(DigestedStateHandler, for_restore=True)
class DigestedRestore(ocp.args.StandardRestore):
  """`StandardRestore` for `DigestedStateHandler`."""


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
        item_handlers={'state': DigestedStateHandler(),
                       'data': ocp.JsonCheckpointHandler()})

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, state, data_state: dict, *, force: bool = False) -> bool:
    """Starts saving `step` (asynchronously). `data_state` is copied now, as JSON: the caller
    may go on changing its dicts while the save is written."""
    snapshot = json.loads(json.dumps(data_state))
    with self._storage('writing checkpoints', step):
      self.manager.check_for_errors()  # an earlier asynchronous save that failed ends the run
      return self.manager.save(step, args=ocp.args.Composite(
          state=DigestedSave(state), data=ocp.args.JsonSave(snapshot)), force=force)

  def check(self) -> None:
    """Raises StorageError when an asynchronous save has failed (cheap: no I/O, no wait)."""
    with self._storage('writing checkpoints', None):
      self.manager.check_for_errors()

  def wait(self) -> None:
    with self._storage('writing checkpoints', None):
      self.manager.wait_until_finished()

  @contextlib.contextmanager
  def _storage(self, what: str, step: int | None):
    """Turns a storage fault (an OSError, or a TensorStore or orbax error caused by one) into
    one StorageError sentence naming the path and errno; other errors pass unchanged."""
    try:
      yield
    except StorageError:
      raise
    except Exception as e:  # noqa: BLE001 - sorted below
      if not is_storage_fault(e):
        raise
      where = paths.join(self.directory, str(step)) if step is not None else self.directory
      raise storage_error(what if step is None else f'{what} (at step {step})', e,
                          path=_fault_path(e) or where) from e

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
        state=DigestedRestore(abstract_state), data=ocp.args.JsonRestore()))
    return out['state'], out['data']

  def restore_latest_good(self, abstract_state):
    """Newest readable checkpoint -> (step, state, data), or None when there is none.

    A shape/structure mismatch is raised (it is the user's config, not a bad file). A step is
    set aside to `<step>.corrupt` (kept for inspection; orbax ignores it, so the step can be
    written again) only on verified damage (`checkpoint_damage.py`: no commit marker, missing or
    truncated files, a file that differs from its digest recorded at save, metadata that
    contradicts the arrays), and the previous one is tried. Any
    other read failure (an I/O error) is retried with backoff, then raised as RestoreFailed with
    every checkpoint in place. A run whose checkpoints are all damaged never starts from step 0
    on its own: RestoreFailed says so.
    """
    steps = self.all_steps()
    for step in reversed(steps):
      if self._damaged(step, damage_lib.quick_damage):
        continue
      restored = self._restore_with_retries(step, abstract_state)
      if restored is not None:
        return (step, *restored)
    aside = self.set_aside_steps()
    if steps or aside:
      kept = f' (the damaged ones are kept as {", ".join(aside)})' if aside else ''
      raise RestoreFailed(
          f'{self.directory} holds no usable checkpoint{kept}, so this run will not silently '
          'start again from step 0: move that directory away to start afresh, or put a good '
          'checkpoint back.')
    return None

  def set_aside_steps(self) -> list[str]:
    """Names of the step directories set aside as damaged (`<step>.corrupt[N]`)."""
    if not paths.exists(self.directory):
      return []
    return sorted(n for n in paths.listdir(self.directory) if '.corrupt' in n)

  def _damaged(self, step: int, check) -> bool:
    """Runs `check(step_dir)` on process 0; sets the step aside when every process hears it is
    damaged, on every file system the path layer reaches (`gs://` as local disks). An
    undecidable check (an I/O error) counts as not damaged."""
    reason = None
    if jax.process_index() == 0:
      try:
        reason = check(paths.join(self.directory, str(step)))
      except damage_lib.DamageUnknown as e:
        log.warning('could not check checkpoint %s/%d for damage (%s); keeping it.',
                    self.directory, step, e)
    if processes.any_process(reason is not None):
      self._set_aside(step, reason)
      return True
    return False

  def _restore_with_retries(self, step: int, abstract_state):
    """(state, data) of `step`; None when it turned out damaged (and was set aside); raises
    RestoreFailed when it stays unreadable for no verified reason."""
    error = None
    for attempt in range(len(RETRY_DELAYS) + 1):
      error = None
      try:
        state, data = self.restore(step, abstract_state)
      except CheckpointMismatchError:
        raise
      except Exception as e:  # noqa: BLE001 - judged below: damage, or retried
        error = e
      if processes.all_processes(error is None):  # every process must have read its shards
        return state, data
      if self._damaged(step, damage_lib.verified_damage):
        return None
      if attempt < len(RETRY_DELAYS):
        log.warning('reading checkpoint %s/%d failed (%s); its files check out, so retrying in '
                    '%.1f s (attempt %d of %d).', self.directory, step, _reason(error),
                    RETRY_DELAYS[attempt], attempt + 2, len(RETRY_DELAYS) + 1)
        time.sleep(RETRY_DELAYS[attempt])
    raise RestoreFailed(
        f'checkpoint {self.directory}/{step} could not be read in {len(RETRY_DELAYS) + 1} '
        f'attempts ({_reason(error)}) although its files show no damage, so every checkpoint '
        'is left in place: fix the storage and run the same command again.')

  def _set_aside(self, step: int, reason: str) -> None:
    """Renames the unreadable step directory out of orbax's sight (read-only: just reports)."""
    path = paths.join(self.directory, str(step))
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
                  'previous one.', path, reason, os.path.basename(aside))
    else:
      log.warning('checkpoint %s is damaged; process 0 moves it aside.', path)
    ocp.multihost.sync_global_processes(f'mmjax_set_aside_{step}')
    self.manager.reload()

  def close(self) -> None:
    with self._storage('writing checkpoints', None):
      self.manager.wait_until_finished()
      self.manager.close()
