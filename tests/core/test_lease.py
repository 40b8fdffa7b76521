"""One trainer per workdir: the lease on a local disk and on gs:// (the GCS emulator, which
honours generation preconditions), refusal naming the holder, takeover when stale."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmjax.core import lease as lease_lib
from gcs_testing import gcs  # noqa: F401 - the emulator fixture


class Clock:
  def __init__(self):
    self.now = 1_700_000_000.0

  def __call__(self):
    return self.now


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, '-c', 'pass'])
  proc.wait()
  return proc.pid


def _check(workdir: str) -> None:
  clock = Clock()
  first = lease_lib.Lease(workdir, ttl_s=60, clock=clock, host='hostA', pid=111)
  first.acquire()
  second = lease_lib.Lease(workdir, ttl_s=60, clock=clock, host='hostB', pid=222)
  clock.now += 30
  with pytest.raises(lease_lib.WorkdirBusy) as info:
    second.acquire()
  assert str(info.value).startswith(f'workdir {workdir} is in use by another trainer (host '
                                     'hostA, pid 111, since 2023-11-14 22:13:20 UTC, lease '
                                     'renewed 30 s ago)')
  first.renew()                                      # renewed: still live after 60 s more
  clock.now += 50
  with pytest.raises(lease_lib.WorkdirBusy, match='renewed 50 s ago'):
    second.acquire()
  clock.now += 61                                    # the holder stopped renewing: stale
  second.acquire()
  with pytest.raises(lease_lib.LeaseLost, match='host hostB, pid 222 holds it now'):
    first.renew()
  first.lost = True                                  # as the renew thread records it
  first.release()                                    # a lost lease is left to its new holder
  with pytest.raises(lease_lib.WorkdirBusy, match='host hostB, pid 222'):
    lease_lib.Lease(workdir, ttl_s=60, clock=clock, host='hostC', pid=333).acquire()
  second.release()
  third = lease_lib.Lease(workdir, ttl_s=60, clock=clock, host='hostC', pid=333)
  third.acquire()                                    # released: free at once
  third.release()


def test_local_lease_refuses_a_live_holder_and_takes_over_a_stale_one(tmp_path):
  _check(str(tmp_path / 'run'))


def test_gcs_lease_uses_generation_preconditions(tmp_path, gcs):  # noqa: F811
  _check(f'gs://bucket/leases/{tmp_path.name}')


def test_a_holder_process_that_is_gone_is_taken_over_at_once(tmp_path):
  import socket
  workdir = str(tmp_path / 'run')
  clock = Clock()
  gone = lease_lib.Lease(workdir, clock=clock, host=socket.gethostname(), pid=_dead_pid())
  gone.acquire()
  lease_lib.Lease(workdir, clock=clock).acquire()    # same host, pid not running: taken over


@pytest.mark.slow
def test_a_second_trainer_on_a_busy_workdir_exits_2_before_compiling_and_writes_nothing(tmp_path):
  """The workdir's lease is held by a live process (this test's: as a running trainer holds
  it); `python -m mmjax.train` on it is refused in one sentence naming the holder."""
  import os
  import socket
  import time
  from run_testing import run, train_argv, write_config
  config, workdir = write_config(tmp_path), tmp_path / 'run'
  holder = lease_lib.Lease(str(workdir))
  holder.acquire()
  t0 = time.monotonic()
  code, out = run(train_argv(config, workdir, '--config.total_steps=4'), tmp_path / 'log',
                  timeout=120)
  took = time.monotonic() - t0
  print(f'second trainer refused in {took:.1f} s')
  assert code == 2 and took < 60, out[-3000:]
  errors = [l for l in out.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1 and errors[0].startswith(
      f'error: workdir {workdir} is in use by another trainer (host {socket.gethostname()}, pid '
      f'{os.getpid()}, since '), errors
  assert 'compil' not in out.lower()
  assert sorted(p.name for p in workdir.iterdir()) == ['trainer.lease.json']
  holder.release()
  assert not list(workdir.iterdir())                 # a released lease leaves nothing
