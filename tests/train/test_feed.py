"""The run's train iterators: a task's data depends on its name and the seed, not on the others."""

from __future__ import annotations

import numpy as np

from mmjax.config.defaults import task
from mmjax.core.tasks import task_signatures
from mmjax.core import partitioning
from mmjax.train import feed
from mmjax_testing import demo_config


def _first_examples(config, n: int = 100) -> dict:
  """`{signature: {key: [n, ...]}}`: the first `n` examples of every task of the run."""
  mesh = partitioning.make_mesh(config.mesh)
  iterators = feed.train_iterators(config, task_signatures(config), mesh)
  out = {}
  for name, it in iterators.items():
    batches = [next(it) for _ in range(-(-n // it.batch_size))]
    out[name] = {k: np.concatenate([b[k] for b in batches])[:n] for k in batches[0]}
    it.close()
  return out


def test_adding_a_task_leaves_the_other_tasks_first_100_examples_unchanged():
  config = demo_config('--config.data.threads=0')
  before = _first_examples(config)
  bigger = demo_config('--config.data.threads=0')
  # A name sorting first moves every other task down one place in the config's task order.
  bigger.tasks.aa_image_text = task('mmjax_digits', 'image,text', 32, contrast='image-text',
                                    image_size=32, text_length=16)
  after = _first_examples(bigger)
  assert set(after) == set(before) | {'aa_image_text@image_size=32,text_length=16'}
  for name, examples in before.items():
    for key, value in examples.items():
      np.testing.assert_array_equal(after[name][key], value, err_msg=f'{name} {key}')
  new, old = after['aa_image_text@image_size=32,text_length=16'], after[
      'image_text@image_size=32,text_length=16']
  assert not np.array_equal(new['image'], old['image'])  # its own order, not a copy of another's
