"""Running a sweep's runs: `python -m mmjax.train` then `python -m mmjax.evaluate`, per run.

Each run lives in `DIR/<variant>/seed_<s>`. `sweep_run.json` records the run's command when it is
first started; `sweep_done.json` is written only after training and evaluation both finished, and
holds the run's metrics. A run with the marker is skipped; one without it is started again, and
`mmjax.train` resumes it from its newest checkpoint. Children write to `train.log`/`eval.log` in
the run's folder. Compiled programs are shared between runs through `DIR/jax_cache`, copied in
before and back after each run (the training loop keeps its cache in its own workdir).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

from mmjax import config as config_lib
from mmjax.sweep import collect
from mmjax.sweep.spec import Run

PLAN_FILE, DONE_FILE = 'sweep_run.json', 'sweep_done.json'


class RunFailed(RuntimeError):
  """A run's training or evaluation failed; the message names the run and its log."""


class Stopped(RuntimeError):
  """The sweep was asked to stop (SIGTERM/SIGINT); unfinished runs resume next time."""


def train_argv(run: Run) -> list[str]:
  return [sys.executable, '-m', 'mmjax.train', f'--config={run.config_arg}',
          f'--workdir={run.workdir}', *run.override_flags()]


def eval_argv(run: Run) -> list[str]:
  return [sys.executable, '-m', 'mmjax.evaluate', f'--config={run.config_arg}',
          f'--workdir={run.workdir}', f'--step={run.total_steps}', *run.override_flags()]


def _plan(run: Run) -> dict:
  return {'config': run.config_arg, 'overrides': [list(o) for o in run.overrides]}


def _read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _write_json(path: str, value) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(value, f, indent=2, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)


def check_consistent(runs: list[Run]) -> None:
  """A run folder started by a different command (other overrides) is an error, before anything
  runs: resuming it would mix two experiments."""
  for run in runs:
    old = _read_json(os.path.join(run.workdir, PLAN_FILE))
    if old is not None and old != _plan(run):
      raise config_lib.ConfigError(
          f'{run.workdir} was started with other settings ({" ".join(_flags(old))}) than this '
          f'sweep gives it ({" ".join(run.override_flags())}): use another --workdir, or delete '
          'that folder to redo it.')


def _flags(plan: dict) -> list[str]:
  return [f'--config.{k}={v}' for k, v in plan.get('overrides', [])]


def done_record(run: Run) -> dict | None:
  """The run's `sweep_done.json` if it finished under this run's settings, else None."""
  rec = _read_json(os.path.join(run.workdir, DONE_FILE))
  if rec is None or rec.get('plan') != _plan(run):
    return None
  return rec


def _copy_new(src: str, dst: str) -> None:
  if not os.path.isdir(src):
    return
  os.makedirs(dst, exist_ok=True)
  for name in os.listdir(src):
    if name.endswith('-cache') and not os.path.exists(os.path.join(dst, name)):
      tmp = os.path.join(dst, f'.{name}.tmp{os.getpid()}_{threading.get_ident()}')
      shutil.copy2(os.path.join(src, name), tmp)
      os.replace(tmp, os.path.join(dst, name))


def _tail(path: str, lines: int = 15) -> str:
  try:
    with open(path, errors='replace') as f:
      return ''.join(f.readlines()[-lines:])
  except OSError:
    return ''


class Executor:
  """Runs runs, at most `jobs` at a time, each child in this process group so a kill of the
  group reaches them; SIGTERM/SIGINT to the sweep are passed on (training checkpoints and stops)."""

  def __init__(self, sweep_dir: str, jobs: int = 1, devices_per_job: int = 0,
               say: Callable[[str], None] = print):
    self.sweep_dir, self.jobs, self.devices_per_job = sweep_dir, max(1, jobs), devices_per_job
    self.say = say
    self.cache = os.path.join(sweep_dir, 'jax_cache')
    self.stop = threading.Event()
    self._children: set[subprocess.Popen] = set()
    self._lock = threading.Lock()
    self._slots: list[int] = list(range(self.jobs))

  # --- signals ------------------------------------------------------------------------------
  def _on_signal(self, signum, frame):
    del frame
    self.stop.set()
    with self._lock:
      for p in list(self._children):
        if p.poll() is None:
          p.send_signal(signal.SIGTERM)
    self.say(f'{signal.Signals(signum).name} received: stopping after the runs in flight '
             'checkpoint; run the same command to continue.')

  # --- one child ----------------------------------------------------------------------------
  def _child(self, argv: list[str], log: str, env: dict) -> int:
    with open(log, 'ab') as f:
      f.write(('$ ' + ' '.join(argv[1:]) + '\n').encode())
      f.flush()
      p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env)
      with self._lock:
        self._children.add(p)
      try:
        return p.wait()
      finally:
        with self._lock:
          self._children.discard(p)

  def _env(self, slot: int) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    # The cache key then does not depend on the cache's folder, so runs share executables.
    env.setdefault('JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES', 'none')
    if self.devices_per_job:
      first = slot * self.devices_per_job
      env['CUDA_VISIBLE_DEVICES'] = ','.join(str(first + i) for i in range(self.devices_per_job))
    return env

  def run_one(self, run: Run, label: str, slot: int = 0) -> dict:
    """Trains (or resumes) and evaluates `run`; writes and returns its done record."""
    os.makedirs(run.workdir, exist_ok=True)
    _write_json(os.path.join(run.workdir, PLAN_FILE), _plan(run))
    env = self._env(slot)
    run_cache = os.path.join(run.workdir, 'jax_cache')
    _copy_new(self.cache, run_cache)
    self.say(f'{label} {run.name}: training ({run.total_steps} steps)')
    t0 = time.monotonic()
    code = self._child(train_argv(run), os.path.join(run.workdir, 'train.log'), env)
    t_train = time.monotonic() - t0
    _copy_new(run_cache, self.cache)
    if self.stop.is_set():
      raise Stopped(f'{run.name} stopped during training')
    if code != 0:
      raise RunFailed(f'{run.name}: training exited with code {code}; the end of '
                      f'{run.workdir}/train.log:\n{_tail(os.path.join(run.workdir, "train.log"))}')
    reached = max((r['step'] for r in collect.read_rows(run.workdir)), default=0)
    if reached < run.total_steps:
      raise RunFailed(f'{run.name}: training stopped at step {reached} of {run.total_steps} '
                      '(was it sent SIGTERM?); run the same command to resume it.')
    self.say(f'{label} {run.name}: evaluating (trained in {t_train:.0f} s)')
    t0 = time.monotonic()
    eval_env = dict(env)  # evaluation has no cache of its own: it uses the sweep's
    eval_env.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.abspath(self.cache))
    code = self._child(eval_argv(run), os.path.join(run.workdir, 'eval.log'), eval_env)
    t_eval = time.monotonic() - t0
    if self.stop.is_set():
      raise Stopped(f'{run.name} stopped during evaluation')
    if code != 0:
      raise RunFailed(f'{run.name}: evaluation exited with code {code}; the end of '
                      f'{run.workdir}/eval.log:\n{_tail(os.path.join(run.workdir, "eval.log"))}')
    report = _read_json(os.path.join(run.workdir, 'eval', f'step_{run.total_steps}.json'))
    if report is None:
      raise RunFailed(f'{run.name}: evaluation wrote no report for step {run.total_steps}; '
                      f'see {run.workdir}/eval.log.')
    metrics = collect.run_metrics(run.workdir, report,
                                  {'train_seconds': t_train, 'eval_seconds': t_eval})
    record = {'plan': _plan(run), 'variant': run.variant, 'seed': run.seed, 'metrics': metrics}
    _write_json(os.path.join(run.workdir, DONE_FILE), record)
    return record

  # --- all runs -----------------------------------------------------------------------------
  def run_all(self, runs: list[Run], on_done: Callable[[Run, dict, str], None]) -> None:
    """Runs every run not yet done; `on_done(run, record, label)` after each finishes.
    Raises RunFailed (after the other runs in flight finish) or Stopped."""
    todo = [r for r in runs if done_record(r) is None]
    total = len(runs)
    done_before = total - len(todo)
    if done_before:
      self.say(f'{done_before} of {total} runs already finished: skipped.')
    old = {}
    if threading.current_thread() is threading.main_thread():
      old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    errors: list[BaseException] = []
    counter = iter(range(done_before + 1, total + 1))
    try:
      with concurrent.futures.ThreadPoolExecutor(self.jobs) as pool:
        pending = list(todo)
        running: dict = {}
        while pending or running:
          while pending and len(running) < self.jobs and not self.stop.is_set() and not errors:
            run = pending.pop(0)
            slot = self._slots.pop(0)
            label = f'[{next(counter)}/{total}]'
            running[pool.submit(self.run_one, run, label, slot)] = (run, label, slot)
          if not running:
            break
          finished, _ = concurrent.futures.wait(
              running, timeout=0.5, return_when=concurrent.futures.FIRST_COMPLETED)
          for fut in finished:
            run, label, slot = running.pop(fut)
            self._slots.append(slot)
            try:
              on_done(run, fut.result(), label)
            except (RunFailed, Stopped) as e:
              errors.append(e)
    finally:
      for s, handler in old.items():
        signal.signal(s, handler)
    failed = [e for e in errors if isinstance(e, RunFailed)]
    if failed:
      raise failed[0]
    if errors or self.stop.is_set():
      raise Stopped('the sweep stopped before every run finished; run the same command to '
                    'continue.')
