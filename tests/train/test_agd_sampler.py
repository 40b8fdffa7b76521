"""The AGD sampler (mmjax/train/agd_sampler.py) gives each task its share."""

import numpy as np

from mmjax.core.tasks import Resolution, Task
from mmjax.train.agd_sampler import AgdSampler


def make(name, weight=1.0, interval=1, sizes=(32,)):
  res = tuple(Resolution(image_size=s) for s in sizes)
  return Task(name=name, dataset='mmjax_digits', split='train', modalities=('image',),
              batch_size=8, resolutions=res, weight=weight, interval=interval)


def test_weighted_shares_within_three_points():
  tasks = [make('a', 1.0), make('b', 2.0), make('c', 5.0)]
  sampler = AgdSampler(tasks, mode='weighted', seed=3)
  counts = np.bincount([sampler.task_index(t) for t in range(1000)], minlength=3)
  assert np.all(np.abs(counts / 1000 - np.array([1, 2, 5]) / 8) < 0.03), counts
  again = AgdSampler(tasks, mode='weighted', seed=3)
  assert [sampler(t).name for t in range(50)] == [again(t).name for t in range(50)]


def test_round_robin_exact_counts():
  tasks = [make('a', interval=1), make('b', interval=3)]
  sampler = AgdSampler(tasks, mode='round_robin')
  picks = [sampler(t).name for t in range(1000)]
  assert picks[:8] == ['a', 'b', 'b', 'b', 'a', 'b', 'b', 'b']
  assert picks.count('a') == 250 and picks.count('b') == 750


def test_resolutions_are_picked_uniformly():
  sampler = AgdSampler([make('a', sizes=(16, 32))], seed=0)
  sizes = [sampler(t).resolution.image_size for t in range(1000)]
  assert abs(sizes.count(16) / 1000 - 0.5) < 0.05
