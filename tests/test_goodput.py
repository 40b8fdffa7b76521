"""Goodput: the wall-time ledger (a fake clock) and a resumed run that books its redone steps."""

from __future__ import annotations

import json
import shutil

import pytest

from mmjax.train import goodput
from test_resume import make_compile_cache, run, train_argv, write_config


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


@pytest.mark.slow
def test_a_resumed_run_books_recomputed_steps_as_lost(request, tmp_path, tmp_path_factory):
  cache = make_compile_cache(request, tmp_path_factory)
  config, workdir = write_config(tmp_path), tmp_path / 'run'
  argv = train_argv(config, workdir, '--config.total_steps=6', '--config.checkpoint_every=3')
  cache.seed(workdir)
  code, out = run(argv, tmp_path / 'log')
  assert code == 0, out[-3000:]
  first = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()][-1]
  assert first['goodput/lost_s'] == 0 and 0 < first['goodput/fraction'] < 1
  parts = sum(v for k, v in first.items() if k.startswith('goodput/') and k.endswith('_s')
              and k != 'goodput/total_s')
  assert parts == pytest.approx(first['goodput/total_s'], rel=1e-9)
  assert 'goodput ' in out and 'productive' in out            # the table at the end
  shutil.rmtree(workdir / 'checkpoints' / '6')                # as if killed before step 6 saved
  code, out = run(argv, tmp_path / 'log')
  cache.keep(workdir)
  assert code == 0, out[-3000:]
  assert 'resumed from checkpoint step 3' in out
  last = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()][-1]
  assert last['step'] == 6 and last['goodput/lost_s'] > 0 and last['goodput/restore_s'] > 0
  assert last['goodput/productive_s'] < first['goodput/productive_s']  # steps 4-6 were lost
