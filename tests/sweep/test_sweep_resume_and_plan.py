"""Pieces that make a sweep trustworthy after a resume, without training anything: duplicate
metrics rows (a resumed run logs the steps it redoes again) count once, the loss panels are the
real tasks only, `--vary` grids and the interleaved run order, and stale runs (their recorded
resolved config differs from what the sweep asks) stop the sweep or, with --rerun_stale, are
deleted to train again."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from mmjax.config import ConfigError
from mmjax.sweep import collect, plots
from mmjax.sweep import one_run as execute
from mmjax.sweep.spec import (Run, canonical_json, first_difference, grid_sweep, interleave,
                              parse_vary)


def _write_rows(path, rows, tail=''):
  with open(path, 'w') as f:
    for r in rows:
      f.write(json.dumps(r) + '\n')
    f.write(tail)


def test_a_resumed_runs_repeated_steps_count_once(tmp_path):
  first = [{'step': s, 'loss': 10.0 - s, 'grad_norm': 1.0} for s in (2, 4, 6)]
  redone = [{'step': s, 'loss': 20.0 - s, 'grad_norm': 3.0} for s in (4, 6, 8)]  # after resume
  eval_row = {'step': 8, 'zero_shot': 0.5}
  _write_rows(tmp_path / 'metrics.jsonl', first + redone + [eval_row], tail='{"step": 10, "lo')
  rows = collect.read_rows(str(tmp_path))
  assert [r['step'] for r in rows] == [2, 4, 6, 8]
  assert [r['loss'] for r in rows] == [8.0, 16.0, 14.0, 12.0]  # the last row of each step
  m = collect.train_metrics(rows)
  # Independent expectation: the uninterrupted run's rows would be exactly these four.
  assert m['train/grad_norm:mean'] == pytest.approx(np.mean([3.0, 3.0, 3.0]))  # first left out
  assert m['train/loss:median'] == pytest.approx(np.median([16.0, 14.0, 12.0]))
  assert m['train/loss'] == 12.0


def test_loss_panels_are_real_tasks_and_mixed_uses_its_window_means():
  rows = [{'step': 4, 'loss': 3.0, 'a/loss': 1.4, 'b/loss': 1.6, 'tasks/mixed/loss': 3.1,
           'tasks/mixed/a/loss': 1.5, 'tasks/mixed/b/loss': 1.7, 'tasks/mixed/examples': 128,
           'tasks/mixed/a/window_steps': 4},
          {'step': 8, 'loss': 2.0, 'a/loss': 0.9, 'b/loss': 1.1, 'tasks/mixed/loss': 2.2,
           'tasks/mixed/a/loss': 1.0, 'tasks/mixed/b/loss': 1.2, 'tasks/mixed/examples': 256}]
  curves = plots.loss_curves(rows)
  assert sorted(curves) == ['a', 'b']
  np.testing.assert_array_equal(curves['a'][0], [128, 256])
  np.testing.assert_array_equal(curves['a'][1], [1.5, 1.0])  # window means, not the step's
  agd = [{'step': 4, 'loss': 1.0, 'tasks/a/loss': 1.2, 'tasks/a/examples': 32,
          'tasks/b/examples': 32, 'tasks/b/loss': 2.0}]
  assert {t: (list(x), list(y)) for t, (x, y) in plots.loss_curves(agd).items()} == {
      'a': ([64.0], [1.2]), 'b': ([64.0], [2.0])}


def test_vary_grid_names_baseline_first_and_bad_vary_is_one_sentence():
  vary = parse_vary(['agd.mode=round_robin,mixed', 'model.patch_size=(4,4),8'])
  assert vary == [('agd.mode', ['round_robin', 'mixed']), ('model.patch_size', ['(4,4)', '8'])]
  sweep = grid_sweep('c.py', vary, ['train/loss'])
  assert list(sweep.variants) == ['mode=round_robin,patch_size=_4_4_', 'mode=round_robin,patch_size=8',
                                  'mode=mixed,patch_size=_4_4_', 'mode=mixed,patch_size=8']
  assert sweep.variants['mode=mixed,patch_size=8'] == {'agd.mode': 'mixed',
                                                       'model.patch_size': '8'}
  for bad in (['agd.mode=mixed'], ['agd.mode'], ['a=1,1'], ['a=1,2', 'a=3,4']):
    with pytest.raises(ConfigError, match='--vary'):
      parse_vary(bad)


def _run(variant, seed, root, config=None):
  config = config or {'optimizer': {'lr': 0.001}, 'seeds': {'init': seed}}
  return Run(variant, seed, str(root / variant / f'seed_{seed}'), 'c.py', (('x', '1'),), 8,
             canonical_json(config))


def test_runs_are_interleaved_by_seed_in_a_seeded_order(tmp_path):
  runs = [_run(v, s, tmp_path) for v in 'abcd' for s in range(3)]
  order = interleave(runs, 0)
  assert [r.seed for r in order] == [0] * 4 + [1] * 4 + [2] * 4
  assert order == interleave(runs, 0) and sorted(order, key=lambda r: (r.variant, r.seed)) == runs
  firsts = {tuple(r.variant for r in interleave(runs, k)[:4]) for k in range(6)}
  assert len(firsts) > 1  # the order seed changes the order


def test_first_difference_names_the_key():
  assert first_difference({'a': {'b': 1, 'c': 2}}, {'a': {'b': 1, 'c': 3}}) == 'a.c: 2 -> 3'
  assert first_difference({'a': 1}, {'a': 1, 'z': 0}) == 'z: absent -> 0'
  assert first_difference({'a': [1, 2]}, {'a': [1, 2]}) is None


def test_stale_run_stops_the_sweep_or_is_rerun(tmp_path):
  run = _run('v', 0, tmp_path)
  os.makedirs(run.workdir)
  record = {'plan': execute._plan(run), 'variant': 'v', 'seed': 0, 'metrics': {},
            'resolved_config': json.loads(run.config_json)}
  execute._write_json(os.path.join(run.workdir, execute.DONE_FILE), record)
  execute.check_fresh([run], rerun_stale=False)  # the same config: reusable
  edited = _run('v', 0, tmp_path, {'optimizer': {'lr': 0.002}, 'seeds': {'init': 0}})
  with pytest.raises(ConfigError, match=r'run v/seed_0 .* is stale: the resolved config differs '
                     r'at optimizer.lr: 0.001 -> 0.002; pass --rerun_stale'):
    execute.check_fresh([edited], rerun_stale=False)
  assert os.path.isdir(run.workdir)
  said = []
  execute.check_fresh([edited], rerun_stale=True, say=said.append)
  assert not os.path.exists(run.workdir) and 'is stale' in said[0]
  # A run recorded before configs were: cannot be checked, so it is not reused either.
  os.makedirs(run.workdir)
  del record['resolved_config']
  execute._write_json(os.path.join(run.workdir, execute.DONE_FILE), record)
  with pytest.raises(ConfigError, match='records no resolved config'):
    execute.check_fresh([run], rerun_stale=False)


def test_a_key_added_since_at_its_default_does_not_make_a_run_stale(tmp_path):
  """A run recorded before mmjax added a key (a new modality's size, a new objective's weight)
  is reused while the key holds its declared default, and is stale once it does not."""
  recorded = {'optimizer': {'lr': 0.001}, 'seeds': {'init': 0}, 'tasks': {'t': {'batch_size': 8}}}
  run = _run('v', 0, tmp_path, recorded)
  os.makedirs(run.workdir)
  execute._write_json(os.path.join(run.workdir, execute.DONE_FILE),
                      {'plan': execute._plan(run), 'resolved_config': recorded})
  now = json.loads(json.dumps(recorded))
  now['tasks']['t'].update(num_points=None, predict='', predict_weight=1.0)  # declared defaults
  assert execute.stale_reason(_run('v', 0, tmp_path, now)) is None
  now['tasks']['t']['predict_weight'] = 0.5
  assert 'tasks.t.predict_weight: absent -> 0.5' in execute.stale_reason(_run('v', 0, tmp_path, now))
  assert 'optimizer.new_knob' in execute.stale_reason(
      _run('v', 0, tmp_path, {**recorded, 'optimizer': {'lr': 0.001, 'new_knob': 1}}))


def test_caption_reports_are_sweep_metrics():
  report = {'zero_shot': {'digits/image': {'top1': 0.5}}}
  captions = {'step': 8, 'datasets': {'digits': {'image': {
      'right_digit_share': 0.25, 'bleu4': 0.1, 'cider': 0.3, 'count': 64, 'samples': []}}}}
  got = collect.eval_metrics(report, captions)
  assert got == {'zero_shot/digits/image/top1': 0.5, 'caption/digits/image/right_digit_share': 0.25,
                 'caption/digits/image/bleu4': 0.1, 'caption/digits/image/cider': 0.3}
  assert collect.wants_captions(['caption/digits/image/cider'])
  assert collect.expand(['caption/*/image/*', 'x'], got) == [
      'caption/digits/image/bleu4', 'caption/digits/image/cider',
      'caption/digits/image/right_digit_share', 'x']


def test_prepare_commands_run_before_a_run_first_trains(tmp_path, monkeypatch):
  """The upcycling step of a sweep: each prepare command runs (placeholders filled) before
  training; a failing one stops the run with its log, and leaves no checkpoints behind."""
  write = 'import sys; open(sys.argv[1], "w").write(sys.argv[2])'
  ok = Run('v', 3, str(tmp_path / 'v' / 'seed_3'), 'missing_config.py', (('a', '1'),), 8,
           prepare=(('python', '-c', write, '{workdir}/prepared', '{seed} {config}'),
                    ('python', '-c', 'import sys; print(sys.argv[1:])', '{flags}')))
  ex = execute.Executor(str(tmp_path), say=lambda s: None)
  # Training itself is not what is tested: a stand-in that fails at once, as a bad config would.
  monkeypatch.setattr(execute, 'train_argv', lambda run: [sys.executable, '-c', 'exit(2)'])
  with pytest.raises(execute.RunFailed, match='training exited with code 2'):
    ex.run_one(ok, '[1/1]')
  assert (tmp_path / 'v' / 'seed_3' / 'prepared').read_text() == '3 missing_config.py'
  log = tmp_path / 'v' / 'seed_3' / 'prepare.log'
  assert "['--config.a=1']" in log.read_text()
  size = log.stat().st_size
  with pytest.raises(execute.RunFailed, match='training exited'):
    ex.run_one(ok, '[1/1]')  # the next attempt resumes training, it does not prepare again
  assert log.stat().st_size == size
  bad = Run('w', 0, str(tmp_path / 'w' / 'seed_0'), 'c.py', (), 8,
            prepare=(('python', '-c', 'import os, sys; os.makedirs(sys.argv[1]); sys.exit(3)',
                      '{workdir}/checkpoints/0'),))
  with pytest.raises(execute.RunFailed, match='preparation command 1 exited with code 3'):
    ex.run_one(bad, '[1/1]')
  assert not (tmp_path / 'w' / 'seed_0' / 'checkpoints').exists()
