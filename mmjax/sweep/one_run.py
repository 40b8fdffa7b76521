"""Running a sweep's runs: `python -m mmjax.train` then `python -m mmjax.evaluate`, per run.

Each run lives in `DIR/<variant>/seed_<s>`. `sweep_run.json` records the run's command and its
resolved config when it is first started; `sweep_done.json` is written only after training and
evaluation both finished, and holds the run's metrics, resolved config and provenance. A run with
the marker is skipped; one without it is started again, and `mmjax.train` resumes it from its
newest checkpoint. A run (finished or not) whose recorded resolved config differs from what the
sweep now gives it is stale: it is never reused (`stale_reason`, `check_fresh`). A variant's
prepare commands run before its first training, until they have all succeeded once (`.prepared`).
Children write to `train.log`/`eval.log`/`prepare.log` in the run's folder. Compiled programs are shared between runs through `DIR/jax_cache`, copied in
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
from mmjax.config import defaults as config_defaults
from mmjax.sweep import collect, provenance
from mmjax.sweep.spec import Run, first_difference

PLAN_FILE, DONE_FILE = 'sweep_run.json', 'sweep_done.json'


class RunFailed(RuntimeError):
  """A run's training or evaluation failed; the message names the run and its log."""


class Stopped(RuntimeError):
  """The sweep was asked to stop (SIGTERM/SIGINT); unfinished runs resume next time."""


def train_argv(run: Run) -> list[str]:
  return [sys.executable, '-m', 'mmjax.train', f'--config={run.config_arg}',
          f'--workdir={run.workdir}', *run.override_flags()]


def eval_argv(run: Run, step: int | None = None) -> list[str]:
  """Evaluates the run's checkpoint at `step` (default: its last)."""
  return [sys.executable, '-m', 'mmjax.evaluate', f'--config={run.config_arg}',
          f'--workdir={run.workdir}', f'--step={run.total_steps if step is None else step}',
          *run.override_flags()]


def caption_argv(run: Run, step: int) -> list[str]:
  return [sys.executable, '-m', 'mmjax.evaluate.captioning', f'--config={run.config_arg}',
          f'--workdir={run.workdir}', f'--step={step}', *run.override_flags()]


def prepare_argv(run: Run, template) -> list[str]:
  out = []
  for a in template:
    if a == '{flags}':
      out += run.override_flags()
    else:
      out.append(a.replace('{workdir}', run.workdir).replace('{config}', run.config_arg)
                 .replace('{seed}', str(run.seed)))
  return [sys.executable if out and out[0] == 'python' else out[0], *out[1:]] if out else out


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
    if old is not None:
      old = {k: old.get(k) for k in ('config', 'overrides')}
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


def stale_reason(run: Run) -> str | None:
  """Why the run's folder cannot be reused for `run` (its recorded resolved config is not the
  one the sweep now gives it: the first differing key), or None when it can (or is empty)."""
  rec = done_record(run) or _read_json(os.path.join(run.workdir, PLAN_FILE))
  if rec is None:
    return None
  old = rec.get('resolved_config')
  if old is None:
    return ('it records no resolved config (it was started before sweeps recorded one), so '
            'what it trained cannot be checked')
  diff = first_difference(old, json.loads(run.config_json), added_ok=_added_at_default)
  return None if diff is None else f'the resolved config differs at {diff}'


def _added_at_default(key: str, value) -> bool:
  """A key the recorded config lacks because mmjax added it since, holding its declared default
  (config/defaults.py): the run trained as that default does, so it is not stale."""
  parts = key.split('.')
  if parts[0] == 'tasks' and len(parts) > 2:
    parts[1] = '*'
  elif parts[:2] == ['evaluation', 'datasets'] and len(parts) > 3:
    parts[2] = '*'
  try:
    default = config_defaults.declared('.'.join(parts))
  except KeyError:
    return False
  if hasattr(default, 'to_dict'):
    default = default.to_dict()
  return json.loads(json.dumps(default, default=str)) == value


def check_fresh(runs: list[Run], rerun_stale: bool, say: Callable[[str], None] = print) -> None:
  """Stops (ConfigError: exit 2) at the first stale run, naming it and the first differing key;
  with `rerun_stale`, deletes each stale run's folder instead so it trains again from scratch."""
  for run in runs:
    reason = stale_reason(run)
    if reason is None:
      continue
    if not rerun_stale:
      raise config_lib.ConfigError(
          f'run {run.name} ({run.workdir}) is stale: {reason}; pass --rerun_stale to train it '
          'again, or use another --workdir.')
    say(f'{run.name} is stale ({reason}): deleting {run.workdir} to train it again.')
    shutil.rmtree(run.workdir)


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
               say: Callable[[str], None] = print, eval_steps=(), captions: bool = False):
    self.sweep_dir, self.jobs, self.devices_per_job = sweep_dir, max(1, jobs), devices_per_job
    self.eval_steps, self.captions = tuple(sorted(set(eval_steps))), captions
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
    started = (_read_json(os.path.join(run.workdir, PLAN_FILE)) or {}).get('started',
                                                                         provenance.now())
    _write_json(os.path.join(run.workdir, PLAN_FILE),
                {**_plan(run), 'resolved_config': json.loads(run.config_json),
                 'config_hash': run.config_hash, 'started': started})
    env = self._env(slot)
    run_cache = os.path.join(run.workdir, 'jax_cache')
    _copy_new(self.cache, run_cache)
    self._prepare(run, label, env)
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
    steps = [s for s in self.eval_steps if s < run.total_steps] + [run.total_steps]
    curve = {}
    for step in steps:
      curve[str(step)] = self._evaluate(run, step, eval_env)
    t_eval = time.monotonic() - t0
    metrics = collect.run_metrics(run.workdir, curve[str(run.total_steps)][0],
                                  {'train_seconds': t_train, 'eval_seconds': t_eval},
                                  curve[str(run.total_steps)][1])
    record = {'plan': _plan(run), 'variant': run.variant, 'seed': run.seed, 'metrics': metrics,
              'curve': {k: collect.eval_metrics(rep, cap) for k, (rep, cap) in curve.items()},
              'total_steps': run.total_steps, 'config_hash': run.config_hash,
              'variant_hash': run.variant_hash,
              'resolved_config': json.loads(run.config_json), 'started': started,
              'finished': provenance.now(), **provenance.code_state()}
    _write_json(os.path.join(run.workdir, DONE_FILE), record)
    return record

  def _prepare(self, run: Run, label: str, env: dict) -> None:
    """The variant's prepare commands (e.g. the checkpoint an upcycled run starts from), until
    they have all succeeded once; an attempt that fails or is stopped leaves no checkpoints, so
    the next one starts clean."""
    marker = os.path.join(run.workdir, '.prepared')
    if not run.prepare or os.path.exists(marker):
      return
    for i, template in enumerate(run.prepare):
      argv = prepare_argv(run, template)
      self.say(f'{label} {run.name}: preparing ({" ".join(argv[1:3])} ...)')
      code = self._child(argv, os.path.join(run.workdir, 'prepare.log'), env)
      if self.stop.is_set() or code != 0:
        shutil.rmtree(os.path.join(run.workdir, 'checkpoints'), ignore_errors=True)
      if self.stop.is_set():
        raise Stopped(f'{run.name} stopped while preparing')
      if code != 0:
        raise RunFailed(f'{run.name}: preparation command {i + 1} exited with code {code}; the '
                        f'end of {run.workdir}/prepare.log:\n'
                        f'{_tail(os.path.join(run.workdir, "prepare.log"))}')
    with open(marker, 'w') as f:
      f.write(provenance.now() + '\n')

  def _evaluate(self, run: Run, step: int, env: dict) -> tuple[dict, dict | None]:
    """The evaluation report (and caption report, when the sweep asks for caption metrics) of
    the run's checkpoint at `step`; a report already written is read, not redone."""
    report = self._report(run, step, env, eval_argv(run, step), f'step_{step}.json', 'evaluation')
    if not self.captions:
      return report, None
    return report, self._report(run, step, env, caption_argv(run, step),
                                f'captions_step_{step}.json', 'caption evaluation')

  def _report(self, run: Run, step: int, env: dict, argv: list[str], name: str, what: str) -> dict:
    """`run.workdir/eval/<name>`, running `argv` (logging to eval.log) when it is not there."""
    path = os.path.join(run.workdir, 'eval', name)
    report = _read_json(path)
    if report is None:
      self._check(self._child(argv, os.path.join(run.workdir, 'eval.log'), env), run, what,
                  'eval.log')
      report = _read_json(path)
      if report is None:
        raise RunFailed(f'{run.name}: {what} wrote no report for step {step}; see '
                        f'{run.workdir}/eval.log.')
    return report

  def _check(self, code: int, run: Run, what: str, log: str) -> None:
    if self.stop.is_set():
      raise Stopped(f'{run.name} stopped during {what}')
    if code != 0:
      raise RunFailed(f'{run.name}: {what} exited with code {code}; the end of '
                      f'{run.workdir}/{log}:\n{_tail(os.path.join(run.workdir, log))}')

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
