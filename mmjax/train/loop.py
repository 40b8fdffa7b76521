"""The training loop, in labelled sections: preflight, workdir, state, compile, data, loop.

Nothing is written until every check has passed. Every task signature is compiled before the
first step; the loop only calls compiled executables, so nothing compiles after it starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import jax
import numpy as np

from mmjax import config as config_lib, paths
from mmjax.core import checkpointing, partitioning
from mmjax.core import lease as lease_lib
from mmjax.core.exports.params_io import is_params_export, load_params
from mmjax.core.tasks import MixedTask, task_signatures, tasks_from_config
from mmjax.data import pipeline
from mmjax.data import run_tokenizer
from mmjax.train.agd_sampler import AgdSampler
from mmjax.errors import UserError
from mmjax.models.encoder import routed_layer_indices
from mmjax.models.moe.config import check_moe_config
from mmjax.seeds import resolve_seeds
from mmjax.train import curves, distributed, faults, feed, freezing, goodput as goodput_lib
from mmjax.train import mixup, routing_stats
from mmjax.train import fourm_setup
from mmjax.train import profiler, progress as progress_lib, task_means
from mmjax.train import state as state_lib, step as step_lib
from mmjax.train import partial_init
from mmjax.train.metrics_writer import MetricsWriter, read_metrics
from mmjax.config.defaults import setting

log = logging.getLogger(__name__)


class PreflightError(UserError, ValueError):
  """A problem found before training starts; one sentence naming it and the fix."""


def check_workdir(workdir: str) -> None:
  """The workdir must be creatable and writable; checked without creating anything. An
  object-store workdir (gs://...) is checked by its first write (credentials live there)."""
  if paths.is_remote(workdir):
    return
  path = os.path.abspath(workdir)
  probe = path
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise PreflightError(f'workdir {workdir!r} cannot be created: {probe!r} is a file.')
  if not os.access(probe, os.W_OK | os.X_OK):
    raise PreflightError(f'workdir {workdir!r} is not writable ({probe!r} denies writing): '
                         'choose another --workdir.')


def _check_init(config) -> None:
  """Frozen parameters need an export to come from; `init_from` must hold one."""
  if freezing.patterns(config.optimizer):
    try:
      freezing.check_config(config, state_lib.abstract_params(config))
    except freezing.FreezeError as e:
      raise PreflightError(str(e)) from None
  if setting(config, 'init_from') and not is_params_export(config.init_from):
    raise PreflightError(f'config.init_from {config.init_from!r} holds no params-only export: '
                         'pass the --output of python -m mmjax.export.')


def preflight(config, workdir: str):
  """Mesh, tasks, data and workdir checks; returns (mesh, signatures, sampler)."""
  mesh = partitioning.make_mesh(config.mesh)
  check_moe_config(config.model, dict(mesh.shape))
  try:
    routed_layer_indices(config.model)
  except ValueError as e:
    raise PreflightError(str(e)) from None
  dp, hosts = partitioning.data_parallel_size(mesh), jax.process_count()
  tasks = tasks_from_config(config)
  for t in tasks:
    if t.batch_size % dp or t.batch_size % hosts:
      raise PreflightError(
          f'task {t.name!r}: global batch {t.batch_size} is not divisible by the data-parallel '
          f'size {dp} (data*fsdp*expert) and the {hosts} process(es): change its batch_size '
          'or config.mesh.')
    pipeline.validate_task(t, config)
    try:
      mixup.check_task(t)
    except ValueError as e:
      raise PreflightError(str(e)) from None
  _check_init(config)
  check_workdir(workdir)
  run_tokenizer.check_run(config, workdir, 'resume')  # a workdir trained with another: refused
  sampler = AgdSampler(tasks, mode=config.agd.mode, seed=resolve_seeds(config).sampler)
  return mesh, task_signatures(config), sampler


def _next_batch(iterators: dict, task) -> dict:
  """This process's batch for `task`; a MixedTask takes one batch of each member task."""
  if isinstance(task, MixedTask):
    return {m.name: next(iterators[m.signature_name]) for m in task.members}
  return next(iterators[task.signature_name])


def _scalars(metrics: dict) -> dict:
  return {k: float(v) for k, v in metrics.items() if k != 'moe' and np.ndim(v) == 0}


def _evaluate(evaluate, config, graphdef, state, step: int, workdir: str, mesh,
              reuse: dict) -> dict:
  rep = evaluate(config, (graphdef, state['params']), step, workdir, mesh, reuse=reuse)
  return {f'eval/zero_shot/{k}/top1': v['top1'] for k, v in rep.get('zero_shot', {}).items()}


def train(config, workdir: str, evaluate=None) -> dict:
  """Runs (or resumes) training; returns the last logged metrics row and the goodput.

  `evaluate(config, (graphdef, params), step, workdir, mesh, reuse=dict) -> report` runs every
  `config.eval_every` steps (the entry point passes `mmjax.evaluate.one_model.evaluate_params`;
  training itself does not depend on the evaluation code). The watchdog
  (`config.faults.watchdog_*`, 0 = off) covers start-up and restore, compilation, evaluation
  and every step, each with its own limit.
  """
  if any(t.fourm for t in tasks_from_config(config)):  # 4M: its frozen tokenizers come first
    fourm_setup.prepare(config)
  with faults.Watchdog(config.faults.watchdog_seconds) as dog, contextlib.ExitStack() as held:
    dog.expect('start-up and restore', config.faults.get('watchdog_restore_seconds', 0))
    return _train(config, workdir, evaluate, dog, held)


def _train(config, workdir: str, evaluate, dog: faults.Watchdog,
           held: contextlib.ExitStack) -> dict:
  ledger = goodput_lib.Goodput()  # where the wall time goes (mmjax/train/goodput.py)
  # --- preflight: nothing is written before this passes -----------------------------------
  if setting(config, 'eval_every') and evaluate is None:
    raise PreflightError('config.eval_every is set but no evaluator was given: call train(config, '
                         'workdir, evaluate=mmjax.evaluate.one_model.evaluate_params) or set '
                         'config.eval_every=0.')
  mesh, signatures, sampler = preflight(config, workdir)
  is_main = jax.process_index() == 0
  graphdef, abstract_state, shardings = state_lib.abstract_train_state(config, mesh)
  resuming = checkpointing.check_resumable(workdir, abstract_state)  # another model: raises
  init_params = None
  if not resuming and setting(config, 'init_from'):  # fine-tuning: weights of a params export
    if setting(config, 'init_from_only'):  # only the named ones (LiT: an imported image tower)
      init_params = partial_init.load(config, abstract_state['params'])
    else:
      init_params, _ = load_params(config.init_from, abstract_state['params'])

  # --- one trainer per workdir: the lease is the first thing written (refused: exit 2) --------
  held.enter_context(lease_lib.hold(
      workdir, ttl_s=config.faults.get('lease_seconds', lease_lib.DEFAULT_TTL_S),
      is_holder=is_main, agree=lambda refused: distributed.any_process_flagged(refused, 'lease')))
  ledger.attach(workdir)  # the job's ledger: earlier attempts are read, this one is kept

  # --- state: restore the newest good checkpoint, or initialise -------------------------------
  paths.makedirs(workdir)
  distributed.barrier('restore')  # processes meet before their first collective
  ckpt = checkpointing.Checkpointer(workdir, keep=config.keep_checkpoints)
  ledger.switch('restore')
  restored = ckpt.restore_latest_good(abstract_state)  # may set damaged steps aside, nothing else
  ledger.switch('startup')
  start, data_state = (0, {}) if restored is None else (restored[0], restored[2])

  # --- data: one iterator per task signature, resumed exactly (on any number of hosts; this
  # also checks the saved state) --------------------------------------------------------------
  iterators = feed.train_iterators(config, signatures, mesh, data_state,
                                   shares=sampler.draw_shares())

  # --- workdir: written once the run is known to start or resume ------------------------------
  if is_main:
    config_lib.save_config(config, workdir)
    run_tokenizer.record(config, workdir)
  jax.config.update('jax_compilation_cache_dir', paths.join(paths.resolve(workdir), 'jax_cache'))
  if restored is None:
    state = state_lib.create_train_state(config, mesh, graphdef, shardings)
    if init_params is not None:
      state = {**state, 'params': partial_init.merge(state['params'], init_params)}
      log.info('initialised parameters from %s', config.init_from)
  else:
    state = restored[1]
    log.info('resumed from checkpoint step %d', start)

  # --- compile every task signature ahead of time --------------------------------------------
  dog.expect('compilation', config.faults.get('watchdog_compile_seconds', 0))
  ledger.switch('compile')
  train_step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  step_tasks = sampler.step_tasks()
  with progress_lib.CompileProgress(len(step_tasks), is_main) as bar:
    compiled = step_lib.compile_train_steps(train_step, abstract_state, step_tasks, config, mesh,
                                            progress=bar)
  ledger.switch('startup')

  # --- loop -----------------------------------------------------------------------------------
  redo = goodput_lib.redone_until(read_metrics(workdir), start)  # steps computed a second time
  writer = MetricsWriter(workdir, resume_step=start)
  writer.write_config(config)
  profile = profiler.ProfileWindow(config.get('profile', None), workdir)
  plots = curves.CheckpointPlots(workdir)
  per_task = {t.name: dict(data_state.get('per_task', {}).get(t.name, {}))
              for t in signatures}
  # Counters of dispatched tasks that are no signature (the mixed baseline's 'mixed') come back
  # too, so a resumed mixed run's example count continues instead of restarting at 0.
  per_task.update({name: dict(s) for name, s in data_state.get('per_task', {}).items()
                   if name not in per_task})
  guard = faults.NonFiniteGuard(config.faults.max_nonfinite_in_row)
  routing_seen = {}  # modality -> that modality's latest MoE routing statistics
  evaluator = {}  # one evaluation embedder for the run: each input signature compiles once
  nan_steps = set(setting(config.faults, 'faults.inject_nan_at_steps') or ())
  last_ckpt, last_row = (start if restored else None), {}

  def new_window() -> dict:  # rates are wall time per window, minus checkpoint/eval time
    return {'start': time.perf_counter(), 'excluded': 0.0, 'wait': 0.0, 'examples': 0,
            'steps': 0, 'means': task_means.TaskWindowMeans()}

  def data_snapshot(step: int) -> dict:
    return {'iterators': {k: it.get_state() for k, it in iterators.items()},
            'per_task': per_task, 'agd_step': step}

  def record(done) -> None:
    """Reads one dispatched step's metrics back (waiting for it) and does its bookkeeping:
    per-task counts, the progress bar, the metrics row on log steps, the non-finite guard."""
    nonlocal window, last_row
    done_step, task, metrics, wait = done
    values = _scalars(jax.device_get(metrics))
    window['means'].add(task.name, values)
    dog.beat()  # the step has finished on the device
    stats = per_task.setdefault(task.name, {})
    stats['steps'] = stats.get('steps', 0) + 1
    stats['examples'] = stats.get('examples', 0) + task.batch_size
    stats['loss'] = values['loss']
    window['wait'] += wait
    window['examples'] += task.batch_size
    window['steps'] += 1
    bar.step(task.name, values['loss'])
    if done_step % config.log_every == 0 or done_step == config.total_steps:
      if 'moe' in metrics:
        moe = jax.device_get(metrics['moe'])
        routing_seen.update(moe)  # the latest statistics of every modality, for the heatmaps
        values.update(routing_stats.routing_rows(moe))
      elapsed = max(time.perf_counter() - window['start'] - window['excluded'], 1e-9)
      last_row = {'task': task.name, 'signature': task.signature_name, **values,
                  'examples_per_sec': window['examples'] / elapsed,
                  'step_time': elapsed / window['steps'],
                  'input_wait_fraction': min(window['wait'] / elapsed, 1.0)}
      for name, s in per_task.items():
        for k in ('steps', 'examples', 'skipped_examples'):  # running totals; metrics: window means
          if k in s:
            last_row[f'tasks/{name}/{k}'] = s[k]
      last_row.update(window['means'].rows())
      writer.write(done_step, last_row)
      bar.logged(done_step, last_row)
      window = new_window()
    try:  # after the row is written, so the last non-finite step is in metrics.jsonl
      guard.update(done_step, bool(values['nonfinite']), last_ckpt)
    except faults.TrainingStopped:
      ckpt.close()  # the last good checkpoint may still be in flight: commit it first
      raise

  distributed.barrier('first_step')  # compilation may have skewed the processes
  bar = progress_lib.Progress(config.total_steps, start, is_main)
  dog.beat()
  every = setting(config.faults, 'faults.preemption_check_every')
  with faults.PreemptionSignal(every=every) as preempt:
    # Metrics are read one step late: step N's are fetched after step N+1 is queued, so the
    # host never idles the accelerator. Log, checkpoint, evaluation and stop steps read at once.
    step, pending = start, None
    window = new_window()
    while step < config.total_steps:
      task = sampler(step)
      ledger.switch('input_wait')
      t0 = time.perf_counter()
      local = _next_batch(iterators, task)
      run_step = compiled[task.signature_name]
      if step + 1 in nan_steps:  # a float input with a NaN: traced anew (pixels travel as uint8)
        local = (faults.poison_batch(local) if not isinstance(task, MixedTask) else
                 {**local, task.members[0].name: faults.poison_batch(local[task.members[0].name])})
        run_step = lambda s, b, t=task: train_step(s, b, t)  # noqa: E731
      wait = time.perf_counter() - t0
      ledger.switch('lost' if step < redo else 'productive')
      skipped = pipeline.skipped_examples(local)
      if skipped:
        stats = per_task.setdefault(task.name, {})
        stats['skipped_examples'] = stats.get('skipped_examples', 0) + skipped
      with profile.step(step):
        state, metrics = run_step(state, step_lib.global_batch(local, mesh, task))
      step += 1
      ckpt.check()  # a failed asynchronous save ends the run now (StorageError, exit 1)
      profile.after(step, state)
      if pending is not None:
        record(pending)
        pending = None
      stop = preempt.poll(step)  # agreed by all processes every few steps, no device sync
      save = step % config.checkpoint_every == 0 or step == config.total_steps or stop
      eval_now = bool(config.eval_every) and step % config.eval_every == 0 and not stop
      current = (step, task, metrics, wait)
      if save or eval_now or step % config.log_every == 0:
        record(current)
      else:
        pending = current
      paused = time.perf_counter()
      if save:
        ledger.switch('checkpoint')
        ckpt.save(step, state, data_snapshot(step), force=True)
        writer.flush()  # on object stores: the buffered rows become one segment
        last_ckpt = step
        if routing_seen and is_main:
          routing_stats.plot_routing_heatmaps(routing_seen, workdir, step)
        if is_main:
          plots.at_checkpoint(final=step == config.total_steps)
      if eval_now:
        ledger.switch('evaluation')
        dog.expect('evaluation', config.faults.get('watchdog_compile_seconds', 0))
        writer.write(step, _evaluate(evaluate, config, graphdef, state, step, workdir, mesh,
                                     evaluator))
        dog.beat()
      window['excluded'] += time.perf_counter() - paused
      ledger.switch('productive')
      if stop:
        log.warning('%s received: checkpoint at step %d written; exiting.', preempt.signal_name,
                    step)
        break
    if pending is not None:
      record(pending)
  profile.stop(state)
  bar.close()
  ledger.switch('checkpoint')
  ckpt.wait()
  ckpt.close()
  writer.write(step, ledger.rows())
  writer.close()
  if is_main:
    print(ledger.table(), flush=True)
  return {'step': step, **last_row}
