"""A damaged image is replaced and counted in training and flagged in evaluation; worker
processes give the same batches as threads, and resume exactly."""

import numpy as np
import pytest

import tfds_mock
from conftest import make_config
from mmjax.data import pipeline
from mmjax.core.tasks import Resolution, Task


def _task(name, batch):
  return Task(name='cls', dataset=name, split='train', modalities=('image',), batch_size=batch,
              resolutions=(Resolution(image_size=16),), classify=('image',), num_classes=10)


@pytest.mark.parametrize('cache_mb', [0, 64])  # read from disk; decoded once into memory
def test_truncated_image_is_replaced_in_training_and_invalid_in_eval(tmp_path, cache_mb):
  root = str(tmp_path)
  name = tfds_mock.prepare(root, 'imagenette', {'train': 8}, 'tfrecord',
                           truncated={'train': (3,)})
  config = make_config(root, cache_mb=cache_mb, threads=0)
  it = pipeline.make_train_iterator(_task(name, 8), config, seed=0)
  batch = next(it)                                    # one batch = the whole epoch
  assert pipeline.skipped_examples(batch) == 1 and 'skipped_examples' not in batch
  assert batch['image'].shape == (8, 16, 16, 3) and batch['image'].dtype == np.uint8
  assert np.all(batch['image'].reshape(8, -1).max(1) > 0)  # the replaced row holds an image
  it.close()
  evals = list(pipeline.make_eval_batches(name, 'train', ('image',), Resolution(image_size=16),
                                          config, batch_size=8))
  assert evals[0]['valid'].tolist() == [True] * 3 + [False] + [True] * 4
  assert 'corrupt' not in evals[0]


def test_worker_processes_give_the_thread_batches_and_resume(tmp_path):
  root = str(tmp_path)
  name = tfds_mock.prepare(root, 'imagenette', {'train': 24}, 'array_record')
  task = _task(name, 4)
  threads = pipeline.make_train_iterator(task, make_config(root, cache_mb=0), seed=1)
  want = [next(threads) for _ in range(5)]
  threads.close()
  workers = pipeline.make_train_iterator(task, make_config(root, cache_mb=0, workers=2), seed=1)
  got = [next(workers) for _ in range(3)]
  state = workers.get_state()
  workers.close()
  resumed = pipeline.make_train_iterator(task, make_config(root, cache_mb=0, workers=2), seed=1)
  resumed.set_state(state)
  got += [next(resumed) for _ in range(2)]
  resumed.close()
  for a, b in zip(want, got):
    assert set(a) == set(b)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
