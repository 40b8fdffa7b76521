"""Two processes (launch/local.sh, 4 CPU devices each, gloo) train like one process on 8 devices.

Data sharding: each process reads the shard `process_index::process_count` of a task's split in
its own per-epoch permutation and contributes `batch_size / process_count` examples to the global
batch (mmjax/data/order.py). A plain 1-process run therefore sees different examples than a
2-process run (its shard is the whole split), and its losses differ. The reference here is a
1-process run whose iterators are replaced by the concatenation of the two hosts' iterators
(process 0's examples first, as the mesh lays out the devices), so that its global batches hold
exactly the 2-process run's examples; the losses then agree to float rounding.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mmjax.train import distributed
from test_resume import (committed, kill_group, make_compile_cache, rows, run, start, train_argv,
                         wait_for, write_config)

SIMULATED_HOSTS = '''"""`python simulated_hosts.py HOSTS TRAIN_ARG...`: a 1-process run whose global batches are
the concatenation of what HOSTS processes would read (see test_multiprocess.py)."""
import sys

import numpy as np

from mmjax.data import pipeline
from mmjax.train import loop

HOSTS = int(sys.argv.pop(1))
make = pipeline.make_train_iterator


class Concatenated:
  def __init__(self, iterators):
    self.iterators = iterators

  def __iter__(self):
    return self

  def __next__(self):
    parts = [next(it) for it in self.iterators]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def get_state(self):
    return self.iterators[0].get_state()

  def set_state(self, state):
    for i, it in enumerate(self.iterators):
      it.set_state({**state, 'process_index': i, 'process_count': HOSTS})


def simulated(task, config, *, seed, process_index=0, process_count=1):
  return Concatenated([make(task, config, seed=seed, process_index=i, process_count=HOSTS)
                       for i in range(HOSTS)])


loop.pipeline.make_train_iterator = simulated
from mmjax.train.__main__ import main
sys.exit(main())
'''


@pytest.fixture(scope='module')
def compile_cache(request, tmp_path_factory):
  return make_compile_cache(request, tmp_path_factory)


def _child_with_env(parent: int, name: str, value: str) -> int:
  """The pid of a child of `parent` whose environment has name=value."""
  for child in Path(f'/proc/{parent}/task/{parent}/children').read_text().split():
    environ = Path(f'/proc/{child}/environ').read_bytes().split(b'\0')
    if f'{name}={value}'.encode() in environ:
      return int(child)
  raise AssertionError(f'no child of {parent} has {name}={value}')


def _params(workdir: Path, step: int, config_path: str):
  from mmjax import config as config_lib
  from mmjax.train import state as state_lib
  from mmjax.core import checkpointing
  from mmjax.core import partitioning
  config = config_lib.load_config(config_path)
  _, abstract, _ = state_lib.abstract_train_state(config, partitioning.make_mesh(config.mesh))
  ckpt = checkpointing.Checkpointer(str(workdir), read_only=True)
  try:
    state, data = ckpt.restore(step, abstract)
  finally:
    ckpt.close()
  return jax.device_get(state['params']), data


@pytest.mark.slow
def test_two_processes_match_one_and_their_checkpoint_restores_in_one(tmp_path, compile_cache):
  config = write_config(tmp_path)
  mp, sim = tmp_path / 'two_processes', tmp_path / 'simulated'
  for w in (mp, sim):
    compile_cache.seed(w)

  # 2 processes x 4 devices; SIGTERM to process 1 only: both must stop after the same step,
  # write one checkpoint together and exit 0.
  launcher = start(['launch/local.sh', '-n', '2', '-d', '4', '--',
                    *train_argv(config, mp, '--config.total_steps=12',
                                '--config.checkpoint_every=12')], tmp_path / 'mp.log')
  try:
    wait_for(lambda: max(rows(mp), default=0) >= 2, launcher, what='step 2 of 2 processes')
    os.kill(_child_with_env(launcher.pid, 'MMJAX_PROCESS_ID', '1'), signal.SIGTERM)
    code = launcher.wait(timeout=300)
  finally:
    if launcher.poll() is None:
      kill_group(launcher)
  compile_cache.keep(mp)
  out = (tmp_path / 'mp.log').read_text(errors='replace')
  assert code == 0, out[-4000:]
  reached = max(rows(mp))
  assert 2 <= reached < 12 and committed(mp, reached), out[-4000:]
  assert 'process 1 of 2, 4 local / 8 global devices' not in out  # process 1 logs warnings only
  assert 'process 0 of 2, 4 local / 8 global devices' in out
  assert f'a signal on another process received: checkpoint at step {reached}' in out

  script = tmp_path / 'simulated_hosts.py'
  script.write_text(SIMULATED_HOSTS)
  code, out = run([sys.executable, str(script), '2',
                   *train_argv(config, sim, f'--config.total_steps={reached}',
                               f'--config.checkpoint_every={reached}')[3:]], tmp_path / 'sim.log')
  compile_cache.keep(sim)
  assert code == 0, out[-3000:]
  two, one = rows(mp), rows(sim)
  assert sorted(two) == sorted(one) == list(range(1, reached + 1))
  for s in one:
    assert two[s]['task'] == one[s]['task']
    np.testing.assert_allclose(two[s]['loss'], one[s]['loss'], rtol=1e-4, err_msg=f'step {s}')

  # The 2-process checkpoint holds the same parameters, restores on 1 process, and training
  # continues from it there.
  p_two, data = _params(mp, reached, config)
  p_one, _ = _params(sim, reached, config)
  for a, b in zip(jax.tree.leaves(p_two), jax.tree.leaves(p_one)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
  assert {s['process_count'] for s in data['iterators'].values()} == {2}
  code, out = run(train_argv(config, mp, f'--config.total_steps={reached + 2}',
                             f'--config.checkpoint_every={reached + 2}'), tmp_path / 'resume.log')
  compile_cache.keep(mp)
  assert code == 0, out[-3000:]
  assert f'resumed from checkpoint step {reached}' in out
  assert 'written by 2 process(es), this run has 1' in out
  assert sorted(rows(mp)) == list(range(1, reached + 3)) and committed(mp, reached + 2)


def test_environment_selects_explicit_auto_or_no_initialisation():
  assert distributed.initialize_args({}) is None
  assert distributed.initialize_args({'MMJAX_DISTRIBUTED': 'off',
                                      'MMJAX_COORDINATOR': 'h:1'}) is None
  assert distributed.initialize_args({'MMJAX_DISTRIBUTED': 'auto'}) == {
      'initialization_timeout': 300}
  assert distributed.initialize_args({
      'MMJAX_COORDINATOR': '10.0.0.2:1234', 'MMJAX_NUM_PROCESSES': '4', 'MMJAX_PROCESS_ID': '3',
      'MMJAX_LOCAL_DEVICE_IDS': '0,1', 'MMJAX_INIT_TIMEOUT': '60'}) == {
          'coordinator_address': '10.0.0.2:1234', 'num_processes': 4, 'process_id': 3,
          'local_device_ids': [0, 1], 'initialization_timeout': 60}
  with pytest.raises(distributed.LaunchError, match='MMJAX_NUM_PROCESSES'):
    distributed.initialize_args({'MMJAX_COORDINATOR': 'h:1', 'MMJAX_PROCESS_ID': '0'})
  with pytest.raises(distributed.LaunchError, match='MMJAX_PROCESS_ID=2 is outside 0..1'):
    distributed.initialize_args({'MMJAX_COORDINATOR': 'h:1', 'MMJAX_NUM_PROCESSES': '2',
                                 'MMJAX_PROCESS_ID': '2'})
  with pytest.raises(distributed.LaunchError, match='comma-separated'):
    distributed.initialize_args({'MMJAX_DISTRIBUTED': 'auto', 'MMJAX_LOCAL_DEVICE_IDS': 'gpu0'})
  with pytest.raises(distributed.LaunchError, match="'slurm' is not understood"):
    distributed.initialize_args({'MMJAX_DISTRIBUTED': 'slurm'})


def test_data_state_is_readdressed_to_this_process(caplog):
  saved = {'agd_step': 7, 'iterators': {'t@a': {'task': 't@a', 'process_index': 0,
                                                 'process_count': 2, 'grain': {'next_index': 3}}}}
  got = distributed.data_state_for_this_process(saved)
  assert got['iterators']['t@a'] == {'task': 't@a', 'process_index': 0, 'process_count': 1,
                                     'grain': {'next_index': 3}}
  assert got['agd_step'] == 7 and saved['iterators']['t@a']['process_count'] == 2
  assert any('written by 2 process(es), this run has 1' in r.getMessage() for r in caplog.records)
  caplog.clear()
  same = {'iterators': {'t@a': {**saved['iterators']['t@a'], 'process_count': 1}}}
  assert distributed.data_state_for_this_process(same) == same and not caplog.records
