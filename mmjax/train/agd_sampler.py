"""The AGD sampler: which concrete task (and resolution) step `t` trains on.

The choice is a pure function of `(seed, t)` (weighted) or of `t` (round robin), so a resumed
run makes the same choices.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmjax.core.tasks import MixedTask, Task


class AgdSampler:
  """Chooses the concrete task of each step.

  `weighted`: task ~ weights, resolution ~ uniform, both from a generator seeded by (seed, t).
  `round_robin`: tasks in name order, task i taking `interval_i` consecutive steps of each period.
  `mixed`: not AGD — the ablation baseline; every step is one `MixedTask` of all tasks.
  """

  def __init__(self, tasks: Sequence[Task], mode: str = 'weighted', seed: int = 0):
    if mode not in ('weighted', 'round_robin', 'mixed'):
      raise ValueError(f"config.agd.mode must be 'weighted', 'round_robin' or 'mixed', "
                       f'got {mode!r}.')
    if not tasks:
      raise ValueError('config.tasks is empty: add at least one task.')
    self.tasks = list(tasks)
    self.mode = mode
    self.seed = int(seed)
    w = np.array([t.weight for t in self.tasks], np.float64)
    if np.any(w < 0) or w.sum() <= 0:
      raise ValueError(f'task weights must be >= 0 with a positive sum, got {w.tolist()}.')
    self.probs = w / w.sum()
    intervals = [t.interval for t in self.tasks]
    if any(i < 1 for i in intervals):
      raise ValueError(f'task intervals must be >= 1, got {intervals}.')
    self.schedule = np.repeat(np.arange(len(self.tasks)), intervals)

  def step_tasks(self) -> list:
    """Every concrete task `__call__` can return: what the train step is compiled for."""
    if self.mode == 'mixed':
      return [MixedTask(tuple(t.signatures()[0] for t in self.tasks))]
    return [s for t in self.tasks for s in t.signatures()]

  def draw_shares(self) -> dict[str, float]:
    """Each concrete task's expected share of the batches drawn, by signature name (they sum to
    1; mixed steps draw every member once)."""
    if self.mode == 'mixed':
      members = self.step_tasks()[0].members
      return {m.signature_name: 1.0 / len(members) for m in members}
    if self.mode == 'round_robin':
      task_share = np.bincount(self.schedule, minlength=len(self.tasks)) / len(self.schedule)
    else:
      task_share = self.probs
    return {s.signature_name: float(p) / len(t.signatures())
            for t, p in zip(self.tasks, task_share) for s in t.signatures()}

  def task_index(self, step: int) -> int:
    if self.mode == 'round_robin':
      return int(self.schedule[step % len(self.schedule)])
    rng = np.random.default_rng([self.seed, int(step)])
    return int(rng.choice(len(self.tasks), p=self.probs))

  def __call__(self, step: int) -> Task | MixedTask:
    """The concrete task (one resolution) of step `step`."""
    if self.mode == 'mixed':
      return self.step_tasks()[0]
    task = self.tasks[self.task_index(step)]
    sigs = task.signatures()
    if len(sigs) == 1:
      return sigs[0]
    rng = np.random.default_rng([self.seed, int(step), 1])
    return sigs[int(rng.integers(len(sigs)))]
