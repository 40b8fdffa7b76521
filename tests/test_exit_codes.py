"""Exit codes by meaning: 2 for the user's input, 1 (restartable) for storage faults, each with
one sentence naming the path and errno; a failed checkpoint write becomes a StorageError."""

from __future__ import annotations

import errno
import os

import jax
import numpy as np
import pytest

from mmjax import cli, errors
from mmjax.config import ConfigError
from mmjax.core import checkpointing
from mmjax.data.errors import DataError
from mmjax.train.loop import PreflightError


def _raises(error):
  def main():
    raise error
  return main


@pytest.mark.parametrize('error', [ConfigError('bad key x: use y.'), DataError('no data.'),
                                   PreflightError('bad mesh.'),
                                   checkpointing.CheckpointMismatchError('other model.')])
def test_user_errors_exit_2_with_one_sentence(error, capsys):
  assert isinstance(error, errors.UserError)
  assert cli.run(_raises(error)) == 2
  assert capsys.readouterr().err == f'error: {error}\n'


def test_every_stage_error_is_a_user_or_storage_error():
  """cli imports no stage: each stage's one-sentence error derives from the ground floor's kinds."""
  from mmjax.core import lease, partitioning
  from mmjax.core.exports.params_io import ExportError
  from mmjax.evaluate.errors import EvalError
  from mmjax.plan.topology import TopologyError
  from mmjax.train.faults import TrainingStopped
  for kind in (ConfigError, DataError, PreflightError, checkpointing.CheckpointMismatchError,
               partitioning.MeshError, lease.WorkdirBusy, ExportError, EvalError, TopologyError,
               TrainingStopped):
    assert issubclass(kind, errors.UserError), kind
  for kind in (checkpointing.RestoreFailed, lease.LeaseLost):
    assert issubclass(kind, errors.StorageError), kind


@pytest.mark.parametrize('code', [errno.EACCES, errno.ENOENT, errno.ENOSPC, errno.EIO])
def test_storage_faults_during_a_run_exit_1_naming_path_and_errno(code, capsys):
  error = OSError(code, os.strerror(code), '/runs/x/metrics.jsonl')
  assert cli.run(_raises(error)) == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith('error: storage fault while running: ')
  assert f'{errno.errorcode[code]} ({os.strerror(code)}) on /runs/x/metrics.jsonl' in err
  assert 'run the same command again' in err


def test_restore_failed_is_a_restartable_storage_error(capsys):
  assert cli.run(_raises(checkpointing.RestoreFailed('could not read it.'))) == 1
  assert capsys.readouterr().err == 'error: could not read it.\n'


def test_a_failed_checkpoint_write_becomes_one_storage_sentence(tmp_path, monkeypatch):
  ckpt = checkpointing.Checkpointer(str(tmp_path / 'run'), async_save=False)
  state = {'w': jax.numpy.ones(4)}

  def failing_save(*args, **kwargs):
    try:
      raise PermissionError(errno.EACCES, 'Permission denied', str(tmp_path / 'run/x'))
    except PermissionError as e:  # orbax wraps the OSError of its writer threads
      raise ValueError('PERMISSION_DENIED: while writing') from e

  monkeypatch.setattr(ckpt.manager, 'save', failing_save)
  with pytest.raises(errors.StorageError) as info:
    ckpt.save(3, state, {})
  assert info.value.errno == errno.EACCES and info.value.path == str(tmp_path / 'run/x')
  assert 'writing checkpoints (at step 3): EACCES (Permission denied)' in str(info.value)
  monkeypatch.setattr(ckpt.manager, 'save', _raises(TypeError('a bug')))
  with pytest.raises(TypeError):                     # not storage: the traceback is kept
    ckpt.save(4, state, {})
  monkeypatch.undo()
  ckpt.close()
  assert checkpointing.is_storage_fault(ValueError('RESOURCE_EXHAUSTED: No space left'))
  assert not checkpointing.is_storage_fault(ValueError('shape mismatch'))
