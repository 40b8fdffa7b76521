"""Restores keep data: only verified damage sets a checkpoint aside, I/O errors are retried and
then fail loudly with everything in place, a mismatch names the parameter, and a run with
checkpoints never falls back to step 0 on its own. Small pytrees, one device, no model."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mmjax.core import checkpointing
from mmjax.train.metrics_writer import last_rows
from run_testing import failing_restore, tree_digest


def _state(step: int) -> dict:
  w = np.random.default_rng(step).normal(size=(64, 32)).astype(np.float32)  # incompressible
  return {'params': {'w': jnp.asarray(w), 'b': jnp.arange(8.0) + step},
          'step': jnp.asarray(step, jnp.int32)}


def _abstract(shape=(64, 32)) -> dict:
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return {'params': {'w': jax.ShapeDtypeStruct(shape, jnp.float32, sharding=sharding),
                     'b': jax.ShapeDtypeStruct((8,), jnp.float32, sharding=sharding)},
          'step': jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding)}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
  monkeypatch.setattr(checkpointing, 'RETRY_DELAYS', (0.01, 0.02, 0.04))
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=5)
  for step in (1, 2, 3):
    ckpt.save(step, _state(step), {'agd_step': step}, force=True)
  ckpt.close()
  return tmp_path


def _restore(workdir, abstract=None):
  ckpt = checkpointing.Checkpointer(str(workdir), keep=5)
  try:
    return ckpt.restore_latest_good(abstract or _abstract())
  finally:
    ckpt.close()



def steps_on_disk(workdir) -> list[str]:
  return sorted(os.listdir(Path(workdir) / 'checkpoints'))


def test_a_transient_error_is_retried_and_the_newest_step_restored(workdir, monkeypatch, caplog):
  calls = failing_restore(monkeypatch, failures=1)
  step, state, data = _restore(workdir)
  assert (step, data['agd_step'], int(state['step'])) == (3, 3, 3)
  assert calls == [3, 3] and steps_on_disk(workdir) == ['1', '2', '3']
  assert any('retrying' in r.getMessage() for r in caplog.records)


def test_a_persistent_error_fails_loudly_with_every_checkpoint_in_place(workdir, monkeypatch):
  before = tree_digest(workdir)
  calls = failing_restore(monkeypatch, failures=10**6)
  with pytest.raises(checkpointing.RestoreFailed) as e:
    _restore(workdir)
  assert calls == [3] * 4  # the newest step, retried; never the older ones
  msg = str(e.value)
  assert msg.startswith(f'checkpoint {workdir}/checkpoints/3 could not be read in 4 attempts '
                        '(OSError: [Errno 5] Input/output error (injected))')
  assert msg.endswith('every checkpoint is left in place: fix the storage and run the same '
                      'command again.') and '\n' not in msg
  assert tree_digest(workdir) == before


def _truncate_biggest(step_dir: Path) -> None:
  biggest = max((p for p in (step_dir / 'state').rglob('*') if p.is_file() and
                 p.parent.name == 'd'), key=lambda p: p.stat().st_size)
  os.truncate(biggest, biggest.stat().st_size // 3)


DAMAGE = {
    'truncated array file': _truncate_biggest,
    'no commit marker': lambda d: [os.remove(d / n) for n in
                                   ('_CHECKPOINT_METADATA', 'commit_success.txt')],
    'data state not JSON': lambda d: (d / 'data' / 'metadata').write_text('{"agd_st'),
    'state metadata missing': lambda d: os.remove(d / 'state' / '_METADATA'),
    'ocdbt manifest missing': lambda d: os.remove(d / 'state' / 'manifest.ocdbt'),
}


@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_verified_damage_is_set_aside_whole_and_the_previous_step_used(workdir, damage, caplog):
  step_dir = workdir / 'checkpoints' / '3'
  DAMAGE[damage](step_dir)
  damaged = tree_digest(step_dir)
  step, state, data = _restore(workdir)
  assert (step, data['agd_step'], int(state['step'])) == (2, 2, 2)
  assert steps_on_disk(workdir) == ['1', '2', '3.corrupt']
  assert tree_digest(workdir / 'checkpoints' / '3.corrupt') == damaged  # kept byte for byte
  warned = [r.getMessage() for r in caplog.records if 'incomplete or corrupt' in r.getMessage()]
  assert len(warned) == 1 and f'{workdir}/checkpoints/3 ' in warned[0]


def test_a_shape_mismatch_names_the_parameter_and_moves_nothing(workdir):
  before = tree_digest(workdir)
  with pytest.raises(checkpointing.CheckpointMismatchError) as e:
    _restore(workdir, _abstract(shape=(64, 16)))
  assert "parameter 'params/w' has shape (64, 32) but the model expects (64, 16)" in str(e.value)
  assert 'corrupt' not in str(e.value)
  with pytest.raises(checkpointing.CheckpointMismatchError):
    checkpointing.check_resumable(str(workdir), _abstract(shape=(64, 16)))
  assert tree_digest(workdir) == before


def test_all_checkpoints_damaged_never_restarts_from_step_zero(workdir):
  for step in ('1', '2', '3'):
    _truncate_biggest(workdir / 'checkpoints' / step)
  with pytest.raises(checkpointing.RestoreFailed, match=r'kept as 1\.corrupt, 2\.corrupt, '
                     r'3\.corrupt\), so this run will not silently start again from step 0'):
    _restore(workdir)
  with pytest.raises(checkpointing.RestoreFailed, match='no usable checkpoint'):
    _restore(workdir)  # the next attempt sees only the set-aside steps: still no silent restart
  assert checkpointing.check_resumable(str(workdir), _abstract())


def test_an_empty_workdir_starts_from_step_zero(tmp_path):
  assert _restore(tmp_path) is None
  assert not checkpointing.check_resumable(str(tmp_path / 'new'), _abstract())


def test_the_data_state_is_copied_when_the_save_starts(tmp_path, monkeypatch):
  mutated = threading.Event()
  handler = ocp.JsonCheckpointHandler
  real_save_fn = handler._save_fn

  async def save_fn_after_mutation(self, x, directory):  # orbax writes the JSON in background
    await asyncio.to_thread(mutated.wait, 30)
    return await real_save_fn(self, x, directory)

  monkeypatch.setattr(handler, '_save_fn', save_fn_after_mutation)
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=5)
  data = {'per_task': {'a': {'steps': 1}}, 'agd_step': 1}
  ckpt.save(1, _state(1), data, force=True)
  data['per_task']['a']['steps'] = 99  # the loop goes on counting while the save is written
  data['agd_step'] = 99
  mutated.set()
  ckpt.close()
  _, restored = checkpointing.Checkpointer(str(tmp_path), read_only=True).restore(1, _abstract())
  assert restored == {'per_task': {'a': {'steps': 1}}, 'agd_step': 1}


def test_readers_take_the_last_row_of_each_step():
  rows = [{'step': 1, 'loss': 3.0}, {'step': 2, 'loss': 2.0}, {'step': 2, 'eval/x': 0.1},
          {'step': 3, 'loss': 1.5},                       # the run dies after logging step 3
          {'step': 3, 'loss': 1.4}, {'step': 4, 'loss': 1.0}]  # resumed from 2: appends
  assert last_rows(rows) == [{'step': 1, 'loss': 3.0}, {'step': 2, 'loss': 2.0},
                             {'step': 2, 'eval/x': 0.1}, {'step': 3, 'loss': 1.4},
                             {'step': 4, 'loss': 1.0}]
  assert json.dumps(last_rows([])) == '[]'
  assert np.isfinite(last_rows(rows)[-1]['loss'])
