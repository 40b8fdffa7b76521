"""Goodput: the wall-time ledger (a fake clock) and a resumed run that books its redone steps."""

from __future__ import annotations

import json
import shutil

import pytest

from mmjax.train import goodput
from run_testing import make_compile_cache, run, train_argv, write_config


class FakeClock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_every_second_lands_in_one_category():
  clock = FakeClock()
  ledger = goodput.Goodput(clock)
  for category, seconds in [('restore', 2.0), ('compile', 5.0), ('input_wait', 0.5),
                            ('productive', 3.0), ('checkpoint', 1.0), ('lost', 1.5),
                            ('productive', 2.0)]:
    clock.now += 0.25 if category == 'restore' else 0.0   # start-up before the first switch
    ledger.switch(category)
    clock.now += seconds
  s = ledger.summary()
  assert s['startup'] == 0.25 and s['restore'] == 2.0 and s['compile'] == 5.0
  assert s['productive'] == 5.0 and s['lost'] == 1.5 and s['evaluation'] == 0.0
  assert s['total'] == pytest.approx(15.25)
  assert s['fraction'] == pytest.approx(5.0 / 15.25)
  rows = ledger.rows()
  assert rows['goodput/productive_s'] == 5.0 and rows['goodput/fraction'] == s['fraction']
  table = ledger.table()
  assert table.splitlines()[0] == 'goodput 32.8% of 15.2 s wall time'
  assert '  compile            5.0    32.8%' in table
  with pytest.raises(ValueError, match='unknown goodput category'):
    ledger.switch('coffee')


def test_redone_steps_are_those_logged_after_the_restored_checkpoint():
  rows = [{'step': s, 'loss': 1.0} for s in range(1, 8)] + [{'step': 8, 'eval/x': 0.5}]
  assert goodput.redone_until(rows, resume_step=5) == 7
  assert goodput.redone_until([], resume_step=5) == 5


def test_the_ledger_is_job_level_across_attempts(tmp_path):
  clock = FakeClock()
  first = goodput.Goodput(clock, flush_every=0.0)
  first.attach(str(tmp_path), write=True)
  first.switch('compile')
  clock.now += 4.0
  first.switch('productive')
  clock.now += 6.0
  first.switch('input_wait')          # written here; a kill after this loses nothing booked
  del first
  clock.now += 30.0                   # the supervisor's delay is no attempt's time
  second = goodput.Goodput(clock, flush_every=0.0)
  second.attach(str(tmp_path), write=True)
  second.switch('restore')
  clock.now += 1.0
  second.switch('lost')
  clock.now += 2.0
  rows = second.rows()
  assert rows['goodput/attempts'] == 2 and rows['goodput/total_s'] == pytest.approx(13.0)
  assert rows['goodput/productive_s'] == 6.0 and rows['goodput/lost_s'] == 2.0
  assert rows['goodput/compile_s'] == 4.0 and rows['goodput/restore_s'] == 1.0
  assert second.attempt_summary()['total'] == pytest.approx(3.0)
  job = goodput.job_summary(str(tmp_path))
  assert job['total'] == pytest.approx(13.0) and job['attempts'] == 2
  assert goodput.format_table(job).splitlines()[0] == \
      'goodput 46.2% of 13.0 s wall time across 2 attempts'


def test_the_ledger_starts_at_process_start():
  import os
  import time
  start = goodput.process_start_time()
  assert start <= time.time() and time.time() - start < 3600
  assert goodput.Goodput()._start == start        # the default clock counts the imports too
  del os


@pytest.mark.slow
def test_a_killed_and_rerun_job_books_both_attempts_from_process_start(
    request, tmp_path, tmp_path_factory):
  """SIGKILL past the first checkpoint, then the same command: the final row's total is the
  wall time of both processes (>= 0.85 of it), the redone steps are lost, and
  `python -m tools.goodput` prints the same job."""
  import subprocess
  import sys
  import time
  from run_testing import ROOT, committed, kill_group, rows as metric_rows, start, subprocess_env, \
      wait_for
  cache = make_compile_cache(request, tmp_path_factory)
  config, workdir = write_config(tmp_path), tmp_path / 'run'
  argv = train_argv(config, workdir, '--config.total_steps=12', '--config.checkpoint_every=3')
  cache.seed(workdir)
  t0 = time.monotonic()
  proc = start(argv, tmp_path / 'log')
  wait_for(lambda: committed(workdir, 3) and max(metric_rows(workdir), default=0) >= 5, proc,
           what='checkpoint 3 and step 5')
  kill_group(proc)
  first_wall = time.monotonic() - t0
  t0 = time.monotonic()
  code, out = run(argv, tmp_path / 'log')
  second_wall = time.monotonic() - t0
  cache.keep(workdir)
  assert code == 0, out[-3000:]
  last = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()][-1]
  parts = sum(v for k, v in last.items() if k.startswith('goodput/') and k.endswith('_s')
              and k != 'goodput/total_s')
  assert parts == pytest.approx(last['goodput/total_s'], rel=1e-9)
  wall = first_wall + second_wall
  print(f'goodput/total_s {last["goodput/total_s"]:.2f} s of {wall:.2f} s wall time of both '
        f'processes ({first_wall:.2f} + {second_wall:.2f}): '
        f'{last["goodput/total_s"] / wall:.3f}')
  assert last['goodput/attempts'] == 2
  assert 0.85 * wall <= last['goodput/total_s'] <= wall
  assert last['goodput/lost_s'] > 0 and last['goodput/restore_s'] > 0
  tool = subprocess.run([sys.executable, '-m', 'tools.goodput', f'--workdir={workdir}'],
                        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=60)
  assert tool.returncode == 0, tool.stderr
  assert tool.stdout.splitlines()[0].endswith('across 2 attempts')
  assert f'{last["goodput/total_s"]:.1f} s wall time' in tool.stdout
