"""Restore faults through the real command (`python -m mmjax.train`'s `main`, in process, on 8
devices): orbax's restore is made to raise OSError, once or always; a mismatched model config
is refused. Every time, the trained workdir keeps its checkpoints, metrics and config."""

from __future__ import annotations

import logging
import shutil

import pytest

from mmjax.train import __main__ as train_cli
from mmjax.core import checkpointing
from run_testing import failing_restore, rows, tree_digest, write_config

SHORT = ('--config.log_every=1', '--config.checkpoint_every=2', '--config.data.threads=1')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A 4-step run with checkpoints 2 and 4: (config path, workdir)."""
  root = tmp_path_factory.mktemp('trained')
  config, workdir = write_config(root), root / 'run'
  code = train_cli.main([f'--config={config}', f'--workdir={workdir}',
                         '--config.total_steps=4', *SHORT])
  assert code == 0
  assert sorted(rows(workdir)) == [1, 2, 3, 4]
  return config, workdir


def _copy(trained, tmp_path):
  config, workdir = trained
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  return config, copy



@pytest.mark.slow
def test_restore_failing_once_resumes_from_the_newest_checkpoint(trained, tmp_path, monkeypatch,
                                                                 caplog):
  caplog.set_level(logging.INFO, logger='mmjax.train.loop')
  config, workdir = _copy(trained, tmp_path)
  metrics_before = (workdir / 'metrics.jsonl').read_text()
  monkeypatch.setattr(checkpointing, 'RETRY_DELAYS', (0.01, 0.02))
  calls = failing_restore(monkeypatch, failures=1)
  code = train_cli.main([f'--config={config}', f'--workdir={workdir}',
                         '--config.total_steps=6', *SHORT])
  assert code == 0
  assert calls == [4, 4]
  assert 'resumed from checkpoint step 4' in caplog.text
  assert not [p for p in (workdir / 'checkpoints').iterdir() if 'corrupt' in p.name]
  assert (workdir / 'metrics.jsonl').read_text().startswith(metrics_before)  # appended to
  assert sorted(rows(workdir)) == [1, 2, 3, 4, 5, 6]


def test_restore_always_failing_exits_nonzero_and_changes_nothing(trained, tmp_path,
                                                                  monkeypatch, capsys):
  config, workdir = _copy(trained, tmp_path)
  before = tree_digest(workdir)
  monkeypatch.setattr(checkpointing, 'RETRY_DELAYS', (0.01, 0.02))
  calls = failing_restore(monkeypatch, failures=10**6)
  code = train_cli.main([f'--config={config}', f'--workdir={workdir}',
                         '--config.total_steps=6', *SHORT])
  assert code == 1
  assert calls == [4, 4, 4]
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith(f'error: checkpoint {workdir}/checkpoints/4 could not be read in 3 '
                            'attempts (OSError')
  assert err[-1].endswith('every checkpoint is left in place: fix the storage and run the same '
                          'command again.')
  # Only the job's goodput ledger gains this attempt's record (its time counts toward the job).
  ledger = lambda tree: {k: v for k, v in tree.items() if not k.startswith('goodput')}  # noqa: E731
  assert ledger(tree_digest(workdir)) == ledger(before)


def test_a_different_model_config_leaves_the_workdir_byte_identical(trained, tmp_path, capsys):
  config, workdir = _copy(trained, tmp_path)
  before = tree_digest(workdir)
  code = train_cli.main([f'--config={config}', f'--workdir={workdir}',
                         '--config.model.size=small'])
  assert code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith(f'error: checkpoint {workdir}/checkpoints/4 parameter ')
  assert 'use the config it was trained with.' in err[-1]
  assert tree_digest(workdir) == before
