"""`python -m mmjax.sweep --config=tiny.py --vary=agd.mode=round_robin,mixed` end to end: a
two-variant, two-seed sweep of a one-layer model for 24 steps, trained and evaluated by the real
commands in subprocesses (8 CPU devices).

Checked: summary.json has n = 2 for every metric (a zero-shot one included) and its numbers are
numpy's on the runs' own files, its Welch intervals scipy's, and it records schema, provenance,
config hashes and steps; a metric no run reports is listed as missing; the same command again
trains nothing; a sweep killed mid-run (SIGKILL to its whole process group, inside the mixed
run, after it logged rows it will log again) and run again ends with the same summary and the
same value of every non-timing metric of that run; editing the base config makes the next run of
the sweep stop with exit 2 naming a run and the key. The first sweep runs two jobs at a time.
Compiled programs are shared through pytest's cache, as in test_resume.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from mmjax.sweep import collect
from run_testing import ROOT, kill_group, make_compile_cache, run, start, subprocess_env

TINY = '''"""python -m mmjax.train --config=tiny.py --workdir=DIR (one layer, two tasks)"""
from mmjax.config.defaults import base_config, eval_dataset, task


def get_config(arg=None):
  c = base_config()
  c.total_steps = 40
  c.log_every = 4
  c.checkpoint_every = 8
  c.model.num_layers = 1
  c.model.embed_dim = 32
  c.model.patch_size = 8
  c.model.max_grid = 4
  c.model.max_text_length = 16
  c.model.vocab_size = 512
  c.optimizer.warmup_steps = 4
  c.data.threads = 1
  sizes = dict(image_size=32, text_length=8)
  c.tasks.image_text = task('mmjax_digits', 'image,text', 16, contrast='image-text', **sizes)
  c.tasks.image_classify = task('mmjax_digits', 'image', 16, classify='image', num_classes=10,
                                **sizes)
  c.evaluation.datasets.digits = eval_dataset('mmjax_digits', 'image', batch_size=64,
                                              retrieval=False, **sizes)
  return c
'''

SWEEP = '''from mmjax.sweep.spec import Sweep


def get_sweep():
  return Sweep(
      config='tiny.py',
      variants={
          'agd': {'agd.mode': 'round_robin'},
          'mixed': {'agd.mode': 'mixed', 'total_steps': lambda c: c.total_steps // 2},
      },
      metrics=METRICS)
'''
METRICS = ('zero_shot/digits/image/top1', 'zero_shot/digits/image/top5', 'train/loss',
           'train/step_time:median')
FILE_RUNS = ['agd/seed_0', 'agd/seed_1', 'mixed/seed_0', 'mixed/seed_1']
AGD, MIXED = 'mode=round_robin', 'mode=mixed'
RUNS = [f'{v}/seed_{s}' for v in (AGD, MIXED) for s in (0, 1)]
VARY_METRICS = ('zero_shot/digits/*/top[15]', 'train/loss', 'train/step_time:median',
                'retrieval/nothing/top1')


def write_sweep(directory: Path) -> Path:
  (directory / 'tiny.py').write_text(TINY)
  path = directory / 'sweep.py'
  path.write_text(SWEEP.replace('METRICS', repr(METRICS)))
  return path


def sweep_argv(sweep: Path, workdir: Path, *extra: str) -> list[str]:
  return [sys.executable, '-m', 'mmjax.sweep', f'--sweep={sweep}', f'--workdir={workdir}',
          '--seeds=2', '--config.total_steps=24', *extra]


def vary_argv(root: Path, workdir: Path, *extra: str) -> list[str]:
  return [sys.executable, '-m', 'mmjax.sweep', f'--config={root / "tiny.py"}',
          '--vary=agd.mode=round_robin,mixed', f'--metrics={",".join(VARY_METRICS)}',
          f'--workdir={workdir}', '--seeds=2', '--config.total_steps=24', *extra]


def non_timing(metrics: dict) -> dict:
  return {k: v for k, v in metrics.items() if not collect.is_timing(k)}


def without_timing(summary: dict) -> dict:
  return {v: {m: e['per_seed'][m] for m in e['per_seed'] if 'time' not in m}
          for v, e in summary['variants'].items()}


@pytest.fixture(scope='module')
def cache(request, tmp_path_factory):
  return make_compile_cache(request, tmp_path_factory)


def seed_cache(cache, workdir: Path) -> None:
  cache.seed(workdir)  # copies into workdir/jax_cache: the sweep's shared cache


@pytest.fixture(scope='module')
def finished(tmp_path_factory, cache):
  """An uninterrupted sweep: (sweep file, workdir, summary, output)."""
  root = tmp_path_factory.mktemp('sweep')
  write_sweep(root)
  workdir = root / 'out'
  seed_cache(cache, workdir)
  code, out = run(vary_argv(root, workdir, '--jobs=2'), root / 'log', timeout=900)
  cache.keep(workdir)
  assert code == 0, out[-4000:]
  return root, workdir, json.loads((workdir / 'summary.json').read_text()), out


@pytest.mark.slow
def test_summary_has_every_metric_for_every_seed_and_matches_numpy(finished):
  _, workdir, summary, out = finished
  for name in RUNS:
    assert f'{name}: done' in out
  assert set(summary['variants']) == {AGD, MIXED} and summary['baseline'] == AGD
  assert summary['schema'] == 2
  prov = summary['provenance']
  assert prov['commit'] and isinstance(prov['dirty'], bool) and prov['mmjax_version']
  assert '--vary=agd.mode=round_robin,mixed' in prov['command']
  assert prov['start'] <= prov['end']
  assert summary['missing'] == [{'variant': v, 'metric': 'retrieval/nothing/top1', 'closest': []}
                                for v in (AGD, MIXED)]
  assert summary['variants'][AGD]['metrics']['retrieval/nothing/top1'] == {
      'missing': f'no run of {AGD} reported it'}
  for v in (AGD, MIXED):
    runs = [workdir / v / f'seed_{s}' for s in (0, 1)]
    steps = 24
    entry = summary['variants'][v]
    assert entry['total_steps'] == 24 and len(entry['config_hash']) == 16
    done = [json.loads((r / 'sweep_done.json').read_text()) for r in runs]
    assert {d['variant_hash'] for d in done} == {entry['config_hash']}
    assert done[0]['config_hash'] != done[1]['config_hash']  # the seeds differ
    # Independent expectation: each run's own evaluation report and metrics.jsonl.
    reports = [json.loads((r / 'eval' / f'step_{steps}.json').read_text()) for r in runs]
    last = [[row for row in map(json.loads, (r / 'metrics.jsonl').read_text().splitlines())
             if 'loss' in row][-1] for r in runs]  # the last training row (goodput follows)
    assert [row['step'] for row in last] == [steps, steps]
    values = {'zero_shot/digits/image/top1': [r['zero_shot']['digits/image']['top1']
                                              for r in reports],
              'zero_shot/digits/image/top5': [r['zero_shot']['digits/image']['top5']
                                              for r in reports],
              'train/loss': [row['loss'] for row in last]}
    for metric, x in values.items():
      got = summary['variants'][v]['metrics'][metric]
      x = np.asarray(x, np.float64)
      half = 12.706204736 * x.std(ddof=1) / np.sqrt(2)  # t(0.975, 1)
      assert got['n'] == 2
      np.testing.assert_allclose(got['mean'], x.mean(), rtol=1e-12)
      np.testing.assert_allclose(got['std'], x.std(ddof=1), rtol=1e-12, atol=1e-15)
      np.testing.assert_allclose(got['ci95'], [x.mean() - half, x.mean() + half], rtol=1e-6,
                                 atol=1e-12)
    for metric in METRICS:
      assert summary['variants'][v]['metrics'][metric]['n'] == 2, (v, metric)
  assert summary['metrics'][:2] == ['zero_shot/digits/image/top1', 'zero_shot/digits/image/top5']
  base = summary['variants'][AGD]['per_seed']['train/loss']
  other = summary['variants'][MIXED]['per_seed']['train/loss']
  diff = summary['variants'][MIXED]['difference_from_baseline']['train/loss']
  d = np.array([other[s] - base[s] for s in ('0', '1')])
  assert diff['n'] == 2 and diff['seeds'] == [0, 1]
  np.testing.assert_allclose(diff['mean'], d.mean(), rtol=1e-12)
  for metric in ('train/loss', 'zero_shot/digits/image/top1'):
    a = list(summary['variants'][MIXED]['per_seed'][metric].values())
    b = list(summary['variants'][AGD]['per_seed'][metric].values())
    got = summary['variants'][MIXED]['difference_from_baseline'][metric]['welch']
    if np.var(a) + np.var(b) == 0:
      assert got is None
      continue
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval()
    np.testing.assert_allclose(got['ci95'], [ci.low, ci.high], rtol=1e-9)
    np.testing.assert_allclose(got['p'], ref.pvalue, rtol=1e-9)
  md = (workdir / 'summary.md').read_text()
  assert f'Paired difference from `{AGD}`' in md and f'| {MIXED} |' in md and 'missing' in md
  assert (workdir / 'plots' / 'metrics.png').stat().st_size > 0
  assert (workdir / 'plots' / 'loss_vs_examples.png').stat().st_size > 0


@pytest.mark.slow
def test_same_command_again_trains_nothing(finished, tmp_path):
  root, workdir, summary, _ = finished
  logs = {n: (workdir / n / 'train.log').stat().st_size for n in RUNS}
  t0 = time.monotonic()
  code, out = run(vary_argv(root, workdir), tmp_path / 'log')
  assert code == 0, out[-3000:]
  assert time.monotonic() - t0 < 60  # process start-up only; each run takes far longer
  assert '4 of 4 runs already finished: skipped.' in out and 'training (' not in out
  assert {n: (workdir / n / 'train.log').stat().st_size for n in RUNS} == logs
  assert json.loads((workdir / 'summary.json').read_text())['variants'] == summary['variants']


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_same_summary(finished, tmp_path):
  """The finished sweep with one mixed run taken away (and the summary): the sweep trains that
  run, is killed after the run logged step 12 (so the resumed run logs steps again), and the
  same command finishes it with the same summary and the same non-timing metrics."""
  root, done_dir, expected, _ = finished
  name = f'{MIXED}/seed_1'
  reference = json.loads((done_dir / name / 'sweep_done.json').read_text())
  workdir = tmp_path / 'out'
  shutil.copytree(done_dir, workdir)
  shutil.rmtree(workdir / name)
  (workdir / 'summary.json').unlink()
  argv = vary_argv(root, workdir)
  proc = start(argv, tmp_path / 'log')
  rows = workdir / name / 'metrics.jsonl'
  deadline = time.monotonic() + 600

  def logged() -> int:
    if not rows.exists():
      return 0
    return max([json.loads(l).get('step', 0) for l in rows.read_text().splitlines()[:-1]]
               or [0])
  first = workdir / name / 'checkpoints' / '8' / '_CHECKPOINT_METADATA'
  while logged() < 12 or not first.exists():
    assert proc.poll() is None, (tmp_path / 'log').read_text()[-3000:]
    assert time.monotonic() < deadline, 'timed out waiting for step 12 and checkpoint 8'
    time.sleep(0.02)
  kill_group(proc)  # the sweep and its training child, mid-run
  assert not (workdir / name / 'sweep_done.json').exists()
  assert not (workdir / 'summary.json').exists()

  code, out = run(argv, tmp_path / 'log2', timeout=900)
  assert code == 0, out[-3000:]
  assert '3 of 4 runs already finished: skipped.' in out
  assert 'resumed from checkpoint step' in (workdir / name / 'train.log').read_text()
  raw = [json.loads(l) for l in rows.read_text().splitlines() if '"loss"' in l]
  assert len(raw) > len({r['step'] for r in raw})  # steps logged twice: the case that matters
  examples = [r['tasks/mixed/examples'] for r in collect.read_rows(workdir / name)]
  assert examples == sorted(examples) and examples[-1] == 24 * 32  # restored, not restarted
  got = json.loads((workdir / 'summary.json').read_text())
  assert without_timing(got) == without_timing(expected)
  resumed = json.loads((workdir / name / 'sweep_done.json').read_text())
  assert non_timing(resumed['metrics']) == non_timing(reference['metrics'])
  assert len(non_timing(reference['metrics'])) > 50


@pytest.mark.slow
def test_edited_base_config_makes_the_sweep_stop_naming_the_run(finished, tmp_path):
  root, workdir, _, _ = finished
  tiny = root / 'tiny.py'
  text = tiny.read_text()
  try:
    tiny.write_text(text.replace('c.optimizer.warmup_steps = 4', 'c.optimizer.warmup_steps = 5'))
    proc = subprocess.run(vary_argv(root, workdir), cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
  finally:
    tiny.write_text(text)
  assert proc.returncode == 2, proc.stderr[-2000:]
  err = proc.stderr.strip().splitlines()[-1]
  assert err.startswith('error: run mode=') and 'is stale' in err, err
  assert 'optimizer.warmup_steps: 4 -> 5' in err and '--rerun_stale' in err


def test_bad_variant_key_exits_2_and_writes_nothing(tmp_path):
  sweep = write_sweep(tmp_path)
  sweep.write_text(sweep.read_text().replace("'agd.mode': 'round_robin'", "'agd.mdoe': 'x'"))
  workdir = tmp_path / 'out'
  proc = subprocess.run(sweep_argv(sweep, workdir), cwd=ROOT, env=subprocess_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  err = proc.stderr.strip().splitlines()[-1]
  assert err.startswith("error: variant 'agd': unknown config key config.agd.mdoe")
  assert not workdir.exists()


def test_print_commands_lists_one_job_per_run_and_writes_nothing(tmp_path):
  sweep = write_sweep(tmp_path)
  workdir = tmp_path / 'out'
  proc = subprocess.run(sweep_argv(sweep, workdir, '--print_commands'), cwd=ROOT,
                        env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  jobs = [l for l in proc.stdout.splitlines() if l.startswith('python -m mmjax.sweep')]
  order = [j.split('--only=')[-1] for j in jobs[:-1]]
  assert sorted(order) == FILE_RUNS and '--only' not in jobs[-1]
  assert {r[-1] for r in order[:2]} == {'0'}  # interleaved: every variant of seed 0 first
  assert '--config.total_steps=12 --config.agd.mode=mixed' in proc.stdout  # lambda resolved
  assert not workdir.exists()
