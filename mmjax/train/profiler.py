"""A `jax.profiler` trace of a window of training steps, for TensorBoard's Profile tab / XProf.

`config.profile = dict(start_step=S, num_steps=N)` traces the N steps after step S (steps are
counted from 1, so `start_step=10, num_steps=5` traces steps 11..15); compilation happens
before the loop and is not in it. The trace goes to `DIR/tensorboard/plugins/profile/<time>/`
(`<host>.xplane.pb`), so `tensorboard --logdir=DIR/tensorboard` shows it beside the scalars
(the Profile tab needs `pip install tensorboard-plugin-profile`; `xprof --logdir=...` also reads
it). Each step is annotated with its number for the step-time view.
"""

from __future__ import annotations

import contextlib
import logging
import os

import jax

from mmjax.config.defaults import setting

log = logging.getLogger(__name__)


class ProfileWindow:
  """`step(n)` wraps the dispatch of step n+1; `after(n, state)` closes the window when due."""

  def __init__(self, profile_config, workdir: str):
    cfg = dict(profile_config or {})
    self.start = int(cfg.get('start_step', 0))
    self.num_steps = int(setting(cfg, 'profile.num_steps'))
    self.logdir = os.path.join(workdir, 'tensorboard')
    self.active = False
    self.done = self.num_steps <= 0

  def step(self, done_steps: int):
    """Context for dispatching the step after `done_steps` completed ones."""
    if not self.done and not self.active and done_steps == self.start:
      jax.profiler.start_trace(self.logdir)
      self.active = True
      log.info('profiling steps %d-%d into %s', done_steps + 1, done_steps + self.num_steps,
               self.logdir)
      self._first = done_steps + 1
    if self.active:
      return jax.profiler.StepTraceAnnotation('train', step_num=done_steps + 1)
    return contextlib.nullcontext()

  def after(self, done_steps: int, state) -> None:
    """Stops the trace once its last step has run on the device."""
    if self.active and done_steps >= self._first + self.num_steps - 1:
      self.stop(state)

  def stop(self, state=None) -> None:
    if self.active:
      if state is not None:
        jax.block_until_ready(state)
      jax.profiler.stop_trace()
      self.active, self.done = False, True
