"""Killed, preempted and corrupted runs resume to the same numbers as an uninterrupted run.

Every run is the real command (`python -m mmjax.train`) in a subprocess on 8 CPU devices with a
two-task tiny config. One uninterrupted 40-step run (module fixture) is the reference. XLA
executables are shared between runs through JAX's persistent compilation cache, kept in pytest's
cache directory, so only the first run of a session (or of a changed model) compiles.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from run_testing import (CompileCache, committed, make_compile_cache, rows, run, same_losses,
                         start, steps_on_disk, train_argv, wait_for, write_config)


@pytest.fixture(scope='module')
def compile_cache(request, tmp_path_factory):
  return make_compile_cache(request, tmp_path_factory)


@pytest.fixture(scope='module')
def reference(tmp_path_factory, compile_cache):
  """An uninterrupted 40-step run: (config path, workdir, rows by step)."""
  root = tmp_path_factory.mktemp('reference')
  config, workdir = write_config(root), root / 'run'
  compile_cache.seed(workdir)
  code, out = run(train_argv(config, workdir), root / 'log')
  compile_cache.keep(workdir)
  assert code == 0, out[-3000:]
  got = rows(workdir)
  assert sorted(got) == list(range(1, 41))
  assert len({r['task'] for r in got.values()}) == 2
  assert steps_on_disk(workdir) == ['20', '40']
  return config, workdir, got


def fresh_workdir(tmp_path: Path, compile_cache: CompileCache) -> Path:
  workdir = tmp_path / 'run'
  compile_cache.seed(workdir)
  return workdir


def copy_of(reference_workdir: Path, tmp_path: Path, keep_steps=('20', '40')) -> Path:
  """A copy of the reference run holding only the checkpoints `keep_steps`."""
  workdir = tmp_path / 'run'
  shutil.copytree(reference_workdir, workdir)
  for p in (workdir / 'checkpoints').iterdir():
    if p.name not in keep_steps:
      shutil.rmtree(p)
  last = max(int(s) for s in keep_steps)
  metrics = workdir / 'metrics.jsonl'
  metrics.write_text(''.join(l + '\n' for l in metrics.read_text().splitlines()
                             if json.loads(l).get('step', 0) <= last))
  return workdir


# --- tests --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigkill_after_checkpoint_then_same_command_matches_uninterrupted(
    reference, tmp_path, compile_cache):
  config, _, expected = reference
  workdir = fresh_workdir(tmp_path, compile_cache)
  argv = train_argv(config, workdir)
  proc = start(argv, tmp_path / 'log')
  wait_for(lambda: committed(workdir, 20), proc, what='checkpoint 20 to be committed')
  proc.send_signal(signal.SIGKILL)
  assert proc.wait(timeout=60) == -signal.SIGKILL
  assert not committed(workdir, 40)

  code, out = run(argv, tmp_path / 'log')
  assert code == 0, out[-3000:]
  assert 'resumed from checkpoint step 20' in out
  got = rows(workdir)
  assert sorted(got) == list(range(1, 41))
  same_losses(got, expected, range(1, 41))


@pytest.mark.slow
def test_sigterm_checkpoints_the_step_reached_exits_zero_and_resumes(reference, tmp_path):
  config, ref_workdir, expected = reference
  workdir = copy_of(ref_workdir, tmp_path, keep_steps=('20',))
  argv = train_argv(config, workdir)
  proc = start(argv, tmp_path / 'log')
  wait_for(lambda: max(rows(workdir), default=0) >= 23, proc, what='step 23')
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 0
  out = (tmp_path / 'log').read_text(errors='replace')
  reached = max(rows(workdir))
  assert 23 <= reached < 40, 'the run should have stopped early'
  assert f'SIGTERM received: checkpoint at step {reached} written' in out
  assert committed(workdir, reached)

  code, out = run(argv, tmp_path / 'log2')
  assert code == 0, out[-3000:]
  assert f'resumed from checkpoint step {reached}' in out
  same_losses(rows(workdir), expected, range(21, 41))


@pytest.mark.slow
def test_flipped_bytes_in_newest_checkpoint_warn_restore_previous_and_continue(reference, tmp_path):
  """64 bytes flipped (same size) in the largest file of the newest step: its digest, recorded
  at save, no longer matches (a truncated or deleted file fails the same check)."""
  config, ref_workdir, expected = reference
  workdir = copy_of(ref_workdir, tmp_path)
  state = workdir / 'checkpoints' / '40' / 'state'
  biggest = max((p for p in state.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  data = bytearray(biggest.read_bytes())
  mid = len(data) // 2
  data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
  biggest.write_bytes(bytes(data))
  damaged = sorted(str(p.relative_to(workdir)) for p in (workdir / 'checkpoints' / '40').rglob('*'))

  code, out = run(train_argv(config, workdir), tmp_path / 'log')
  assert code == 0, out[-3000:]
  warnings = [l for l in out.splitlines() if 'incomplete or corrupt' in l]
  assert len(warnings) == 1 and 'checkpoints/40 ' in warnings[0], warnings
  assert 'does not match the SHA-256 digest' in warnings[0], warnings
  assert 'resumed from checkpoint step 20' in out
  same_losses(rows(workdir), expected, range(21, 41))
  # Nothing was deleted: the damaged step is kept aside, byte for byte, and 40 was written anew.
  assert steps_on_disk(workdir) == ['20', '40', '40.corrupt']
  kept = workdir / 'checkpoints' / '40.corrupt'
  assert sorted(str(p.relative_to(workdir)).replace('40.corrupt', '40')
                for p in kept.rglob('*')) == damaged
  assert committed(workdir, 40)


def test_missing_files_are_reported_and_the_previous_step_restored(reference, tmp_path, caplog):
  """In-process, no training: each kind of damage to step 40 makes restore fall back to 20."""
  import jax
  from mmjax import config as config_lib
  from mmjax.train import state as state_lib
  from mmjax.core import checkpointing
  from mmjax.core import partitioning

  config_path, ref_workdir, _ = reference
  config = config_lib.load_config(config_path)
  _, abstract, _ = state_lib.abstract_train_state(config, partitioning.make_mesh(config.mesh))
  for i, victim in enumerate(['state/_METADATA', 'state/manifest.ocdbt', 'data/metadata']):
    workdir = copy_of(ref_workdir, tmp_path / str(i))
    os.remove(workdir / 'checkpoints' / '40' / victim)
    caplog.clear()
    ckpt = checkpointing.Checkpointer(str(workdir))
    try:
      step, state, data = ckpt.restore_latest_good(abstract)
    finally:
      ckpt.close()
    assert step == 20 and data['agd_step'] == 20, victim
    assert int(jax.device_get(state['step'])) == 20
    warned = [r.getMessage() for r in caplog.records if 'incomplete or corrupt' in r.getMessage()]
    assert len(warned) == 1 and f'{workdir}/checkpoints/40 ' in warned[0], (victim, warned)
    assert steps_on_disk(workdir) == ['20', '40.corrupt'], victim
