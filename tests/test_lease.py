"""One trainer per workdir: the lease on a local disk and on gs:// (the GCS emulator, which
honours generation preconditions), refusal naming the holder, takeover when stale."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmjax.core import lease as lease_lib
from test_cloud_workdir import gcs  # noqa: F401 - the emulator fixture


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
def test_a_second_trainer_on_a_busy_workdir_exits_2_at_once_and_writes_nothing(
    request, tmp_path, tmp_path_factory):
  import json
  import signal
  import time
  from test_resume import (kill_group, make_compile_cache, rows, run, start, train_argv,
                           wait_for, write_config)
  cache = make_compile_cache(request, tmp_path_factory)
  config, workdir = write_config(tmp_path), tmp_path / 'run'
  argv = train_argv(config, workdir, '--config.total_steps=2000', '--config.checkpoint_every=1000')
  cache.seed(workdir)
  first = start(argv, tmp_path / 'first.log')
  try:
    wait_for(lambda: max(rows(workdir), default=0) >= 2, first, what='step 2 of the first')
    t0 = time.monotonic()
    code, out = run(argv, tmp_path / 'second.log', timeout=120)
    took = time.monotonic() - t0
    assert first.poll() is None, 'the first trainer should still be running'
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 0
  finally:
    if first.poll() is None:
      kill_group(first)
  cache.keep(workdir)
  print(f'second trainer refused in {took:.1f} s')
  assert code == 2 and took < 60, out[-3000:]
  errors = [l for l in out.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1 and f'workdir {workdir} is in use by another trainer (host ' in errors[0]
  assert f', pid {first.pid}, since ' in errors[0], errors[0]
  assert 'Compiling' not in out and 'compil' not in out.lower()
  steps = [json.loads(l)['step'] for l in (workdir / 'metrics.jsonl').read_text().splitlines()
           if 'loss' in json.loads(l)]
  assert steps == list(range(1, len(steps) + 1))     # every step logged once, by the first
  assert not (workdir / 'trainer.lease.json').exists()  # released at the end
