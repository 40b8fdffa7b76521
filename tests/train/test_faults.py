"""Non-finite steps, preemption signals, the hang watchdog, and no code execution on load."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmjax.train import faults
from run_testing import (ROOT, committed, make_compile_cache, rows, run, steps_on_disk,
                         subprocess_env, train_argv, write_config)


@pytest.fixture(scope='module')
def compile_cache(request, tmp_path_factory):
  return make_compile_cache(request, tmp_path_factory)


@pytest.mark.slow
def test_nan_steps_leave_parameters_unchanged_and_stop_the_run(tmp_path, compile_cache):
  import jax
  from mmjax import config as config_lib
  from mmjax.train import state as state_lib
  from mmjax.core import checkpointing
  from mmjax.core import partitioning

  config = write_config(tmp_path)
  workdir = tmp_path / 'run'
  compile_cache.seed(workdir)
  code, out = run(train_argv(config, workdir, '--config.total_steps=8',
                             '--config.checkpoint_every=1', '--config.keep_checkpoints=10',
                             '--config.faults.inject_nan_at_steps=(2,4,5)',
                             '--config.faults.max_nonfinite_in_row=2'), tmp_path / 'log')
  compile_cache.keep(workdir)
  assert code == 2, out[-3000:]
  assert ('error: stopping at step 5: 2 steps in a row had a non-finite loss or gradient norm '
          '(config.faults.max_nonfinite_in_row=2); the last good checkpoint is step 4') in out
  assert len(re.findall(r'step \d: loss or gradient norm is not finite', out)) == 3
  got = rows(workdir)
  assert sorted(got) == [1, 2, 3, 4, 5]
  assert [got[s]['nonfinite'] for s in range(1, 6)] == [0, 1, 0, 1, 1]
  assert got[2]['loss'] == 'nan' and np.isfinite(got[3]['loss'])
  assert steps_on_disk(workdir) == ['1', '2', '3', '4'] and committed(workdir, 4)

  cfg = config_lib.load_config(config)
  _, abstract, _ = state_lib.abstract_train_state(cfg, partitioning.make_mesh(cfg.mesh))
  ckpt = checkpointing.Checkpointer(str(workdir), read_only=True)
  try:
    states = {s: jax.device_get(ckpt.restore(s, abstract)[0]) for s in (1, 2, 3, 4)}
  finally:
    ckpt.close()
  leaves = {s: jax.tree.leaves({k: v for k, v in st.items() if k != 'step'})
            for s, st in states.items()}

  def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(leaves[a], leaves[b]))

  assert same(1, 2), 'the NaN step 2 changed parameters or optimizer state'
  assert not same(2, 3), 'the finite step 3 should have updated the parameters'
  assert same(3, 4), 'the NaN step 4 changed parameters or optimizer state'
  assert all(np.isfinite(x).all() for x in leaves[4] if np.issubdtype(x.dtype, np.floating))


def test_poison_batch_puts_one_nan_into_a_copy():
  batch = {'text': np.ones((2, 3), np.int32), 'image': np.zeros((2, 4, 4, 3), np.float32)}
  out = faults.poison_batch(batch)
  assert np.isnan(out['image'][0, 0, 0, 0]) and np.isnan(out['image']).sum() == 1
  assert not np.isnan(batch['image']).any() and out['text'] is batch['text']
  with pytest.raises(ValueError, match='no floating-point input'):
    faults.poison_batch({'text': batch['text']})


def test_nonfinite_guard_counts_and_resets():
  guard = faults.NonFiniteGuard(3)
  for step, bad in enumerate([True, True, False, True, True], start=1):
    guard.update(step, bad, last_checkpoint=None)
  assert (guard.in_row, guard.total) == (2, 4)
  with pytest.raises(faults.TrainingStopped, match='no checkpoint was written yet'):
    guard.update(6, True, last_checkpoint=None)


def test_preemption_signal_sets_flag_and_second_sigint_aborts():
  before = signal.getsignal(signal.SIGTERM)
  with faults.PreemptionSignal(every=10) as preempt:
    assert not preempt.poll(1)
    os.kill(os.getpid(), signal.SIGTERM)
    # One process: nothing to agree on, so any step answers (no wait for a multiple of 10).
    assert preempt.poll(3) and preempt.signal_name == 'SIGTERM'
  assert signal.getsignal(signal.SIGTERM) is before
  with faults.PreemptionSignal() as preempt:
    os.kill(os.getpid(), signal.SIGINT)
    assert preempt.requested
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)


WATCHDOG_SCRIPT = '''
import sys, time
from mmjax.train import faults

def stalled_step():
  time.sleep(60)

def slow_compile(seconds):
  time.sleep(seconds)

with faults.Watchdog(float(sys.argv[1])) as dog:
  dog.expect('compilation', 6.0)   # longer than a step may take, within its own limit
  slow_compile(3.0 if sys.argv[2] != 'compile-stall' else 60)
  dog.beat()
  for _ in range(6):   # steps that finish in time keep it quiet
    time.sleep(0.2)
    dog.beat()
  if sys.argv[2] == 'stall':
    stalled_step()
print('finished')
'''


@pytest.mark.parametrize('mode', ['stall', 'compile-stall', 'healthy'])
def test_watchdog_dumps_all_stacks_and_exits_nonzero_on_a_hang(tmp_path, mode):
  script = tmp_path / 'watchdog_script.py'
  script.write_text(WATCHDOG_SCRIPT)
  proc = subprocess.run([sys.executable, str(script), '1.5', mode], cwd=ROOT,
                        env=subprocess_env(), capture_output=True, text=True, timeout=60)
  if mode == 'healthy':  # a 3 s compilation under its 6 s limit, though steps get 1.5 s
    assert proc.returncode == 0 and 'finished' in proc.stdout, proc.stderr
    return
  assert proc.returncode == 3, proc.stderr
  assert 'finished' not in proc.stdout
  if mode == 'stall':
    assert 'mmjax watchdog: no training step finished within' in proc.stderr
    assert 'in stalled_step' in proc.stderr            # the main thread's stack
  else:
    assert 'mmjax watchdog: compilation did not finish within' in proc.stderr
    assert '(limit 6 s' in proc.stderr and 'in slow_compile' in proc.stderr
  assert 'Current thread 0x' in proc.stderr and 'Thread 0x' in proc.stderr  # every thread


# Reading a config, a checkpoint or data must never run code from the file read. Allowed:
# - `spec.loader.exec_module` in mmjax/config/__init__.py: configs are Python files by design,
#   imported from a path the user names, like any module they run;
# - `ast.literal_eval` in mmjax/config/__init__.py: parses `--config.k=v` values as literals only;
# - `allow_pickle=False`: numpy's explicit refusal to unpickle (mmjax/data/records.py).
FORBIDDEN = re.compile(r'pickle|\beval\(|\bexec\(|\bmarshal\b|\bdill\b|\bshelve\b|yaml\.load\(')
ALLOWED = re.compile(r'spec\.loader\.exec_module\(|ast\.literal_eval\(|allow_pickle=False')


def test_no_pickle_eval_or_exec_where_configs_checkpoints_or_data_are_read():
  hits = []
  for path in sorted((ROOT / 'mmjax').rglob('*.py')):
    for n, line in enumerate(path.read_text().splitlines(), start=1):
      if FORBIDDEN.search(ALLOWED.sub('', line)):
        hits.append(f'{path.relative_to(ROOT)}:{n}: {line.strip()}')
  assert not hits, 'code execution on load:\n' + '\n'.join(hits)
  config_src = (ROOT / 'mmjax' / 'config' / '__init__.py').read_text()
  assert config_src.count('exec_module(') == 1 and 'literal_eval(' in config_src


def test_the_watchdog_is_on_by_default_and_compilation_has_its_own_longer_limit():
  from mmjax.config.defaults import base_config
  f = base_config().faults
  assert f.watchdog_seconds > 0 and f.watchdog_restore_seconds >= f.watchdog_seconds
  assert f.watchdog_compile_seconds >= 4 * f.watchdog_seconds  # compiles take far longer
