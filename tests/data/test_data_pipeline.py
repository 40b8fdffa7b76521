"""Train iterators (shapes, determinism, exact resume, host sharding) and eval batches."""

import dataclasses
import json

import numpy as np
import pytest

from mmjax.core.tasks import Resolution, Task
from mmjax.data import pipeline, sources


def task(modalities, batch=32, classify=(), feature_map=(), **res):
  sizes = dict(image_size=32, num_frames=4, audio_samples=2048, text_length=16)
  sizes.update(res)
  keep = {'image_size': 'image' in modalities or 'video' in modalities,
          'num_frames': 'video' in modalities, 'audio_samples': 'audio' in modalities,
          'text_length': 'text' in modalities}
  resolution = Resolution(**{k: v for k, v in sizes.items() if keep[k]})
  return Task(name='t', dataset='mmjax_digits', split='train', modalities=tuple(modalities),
              batch_size=batch, resolutions=(resolution,), classify=tuple(classify),
              num_classes=10 if classify else 0, feature_map=tuple(feature_map))


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_same(a, b):
  assert a.keys() == b.keys()
  for k in a:
    assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize('modalities,classify', [
    (('image', 'text'), ('image',)), (('video', 'text'), ()), (('audio', 'text'), ()),
    (('video', 'audio'), ())])
def test_train_batch_shapes(data_config, modalities, classify):
  t = task(modalities, batch=16, classify=classify, image_size=24)
  batch = next(pipeline.make_train_iterator(t, data_config, seed=0))
  want = {'image': ((16, 24, 24, 3), np.uint8), 'video': ((16, 4, 24, 24, 3), np.uint8),
          'audio': ((16, 2048), np.int16), 'text': ((16, 16), np.int32),
          'text_mask': ((16, 16), np.int32), 'label': ((16,), np.int32)}
  keys = set(modalities) | ({'text_mask'} if 'text' in modalities else set()) | (
      {'label'} if classify else set())
  assert set(batch) == keys
  for k in keys:
    assert batch[k].shape == want[k][0] and batch[k].dtype == want[k][1], k
  for k in ('image', 'video'):
    if k in batch:
      assert batch[k].max() > 128  # uint8 pixels, not rescaled on the host
  if 'text' in batch:
    assert np.array_equal(batch['text_mask'], (batch['text'] != 0).astype(np.int32))


def test_deterministic_given_seed(data_config):
  t = task(('image', 'audio', 'text'))
  a, b, c = (take(pipeline.make_train_iterator(t, data_config, seed=s), 3) for s in (5, 5, 6))
  for x, y in zip(a, b):
    assert_same(x, y)
  assert not np.array_equal(a[0]['image'], c[0]['image'])


def test_exact_resume_across_epochs(config_with):
  """1438 examples / 64 = 22.5 batches an epoch: resume at 21 and cross the epoch boundary."""
  config = config_with(threads=2, prefetch=3)
  t = task(('video', 'audio', 'text'), batch=64, classify=())
  it = pipeline.make_train_iterator(t, config, seed=1)
  take(it, 21)
  state = json.loads(json.dumps(it.get_state()))
  expected = take(it, 4)
  resumed = pipeline.make_train_iterator(t, config, seed=1)
  next(resumed)  # a fresh iterator that already moved on
  resumed.set_state(state)
  for want, got in zip(expected, take(resumed, 4)):
    assert_same(want, got)
  other = pipeline.make_train_iterator(task(('audio',), batch=64), config, seed=1)
  with pytest.raises(sources.DataError, match='Data iterator state is for task='):
    other.set_state(state)


@pytest.mark.parametrize('modalities', [('image', 'text'), ('video', 'audio', 'text')])
def test_hosts_slices_make_the_one_host_global_batch(config_with, modalities):
  """Elastic data: for 1, 2 or 3 hosts, the hosts' batches (augmentation included) concatenate
  to the one-host batch, and a state saved on 3 hosts resumes on 2 with the same global order."""
  config = config_with(flip=True)
  t = task(modalities, batch=48)
  one = take(pipeline.make_train_iterator(t, config, seed=3), 3)
  for hosts in (2, 3):
    its = [pipeline.make_train_iterator(t, config, seed=3, process_index=h, process_count=hosts)
           for h in range(hosts)]
    for j in range(3):
      parts = [next(it) for it in its]
      assert all(len(p['text']) == 48 // hosts for p in parts)
      assert_same(one[j], {k: np.concatenate([p[k] for p in parts]) for k in one[j]})
  state = json.loads(json.dumps(its[0].get_state()))     # after 3 batches on 3 hosts
  assert state == its[2].get_state()                      # the state is global
  later = take(pipeline.make_train_iterator(t, config, seed=3), 5)[3:]
  two = [pipeline.make_train_iterator(t, config, seed=3, process_index=h, process_count=2)
         for h in range(2)]
  for it in two:
    it.set_state(state)
  for want in later:
    parts = [next(it) for it in two]
    assert_same(want, {k: np.concatenate([p[k] for p in parts]) for k in want})


def test_one_epoch_visits_every_example_once(data_config):
  """Labels mapped from `id` reveal the examples read: 1438 examples, global batches of 48,
  two hosts; the first 29 global batches (1392 examples) have no repeat, epoch 2 reshuffles."""
  t = task(('image',), batch=48, classify=('image',), feature_map=(('id', 'label'),))
  t = dataclasses.replace(t, num_classes=0)
  its = [pipeline.make_train_iterator(t, data_config, seed=0, process_index=h, process_count=2)
         for h in range(2)]
  ids = np.concatenate([b['label'] for _ in range(31) for b in (next(its[0]), next(its[1]))])
  first = ids[:1438]
  assert len(set(first.tolist())) == 1438
  all_ids = sources.open_source('mmjax_digits', 'train', data_config.data_dir).read(
      range(1438), ['id'])['id']
  assert set(first.tolist()) == set(all_ids.tolist())
  assert not np.array_equal(ids[1438:1488], first[:50])


def test_eval_covers_every_example_once(data_config):
  res = Resolution(image_size=32, text_length=16)
  hosts = [list(pipeline.make_eval_batches(
      'mmjax_digits', 'test', ('image', 'text'), res, data_config, batch_size=64,
      process_index=p, process_count=2)) for p in range(2)]
  assert len(hosts[0]) == len(hosts[1]) == 6      # ceil(359 / 64) batches on every host
  index = np.concatenate([b['index'][b['valid']] for h in hosts for b in h])
  assert sorted(index.tolist()) == list(range(359))
  last = [h[-1] for h in hosts]
  assert sum(int(b['valid'].sum()) for b in last) == 359 - 5 * 64
  assert all(np.all(b['index'][~b['valid']] == -1) for b in last)
  src = sources.open_source('mmjax_digits', 'test', data_config.data_dir)
  truth = src.read(range(359), ['label', 'image'])
  for b in hosts[1]:
    keep = b['valid']
    np.testing.assert_array_equal(b['label'][keep], truth['label'][b['index'][keep]])
    np.testing.assert_array_equal(b['image'][keep], truth['image'][b['index'][keep]])
    # eval: no crop, no augmentation


def test_eval_clips_are_evenly_spaced(data_config):
  res = Resolution(image_size=32, num_frames=4, audio_samples=2048)
  batches = pipeline.make_eval_batches('mmjax_digits', 'test', ('video', 'audio'), res,
                                       data_config, batch_size=16, num_clips=3)
  first = next(iter(batches))
  assert first['video'].shape == (16, 3, 4, 32, 32, 3) and first['audio'].shape == (16, 3, 2048)
  truth = sources.open_source('mmjax_digits', 'test', data_config.data_dir).read(
      range(16), ['video', 'audio'])
  for clip, start in enumerate((0, 2, 4)):            # frames 0-3, 2-5, 4-7 of 8
    np.testing.assert_array_equal(first['video'][:, clip], truth['video'][:, start:start + 4])
  for clip, start in enumerate((0, 1024, 2048)):      # windows of 2048 samples out of 4096
    want = np.clip(np.rint(truth['audio'][:, start:start + 2048] * 32768), -32768, 32767)
    np.testing.assert_array_equal(first['audio'][:, clip], want.astype(np.int16))
  again = next(iter(batches))
  assert_same(first, again)


def test_dataset_info(data_config):
  info = pipeline.dataset_info('mmjax_digits', data_config)
  assert info.class_names[7] == 'seven' and len(info.class_names) == 10
  assert info.splits == {'train': 1438, 'test': 359}
  assert set(info.modalities) == {'image', 'video', 'audio', 'point_cloud', 'time_series', 'text',
                                 'label'}   # 1.2.0: the pen strokes as points and over time
  assert 'caption' in info.features and info.tokenizer_file.endswith('tokenizer.model')


def test_measure_throughput(data_config):
  it = pipeline.make_train_iterator(task(('image',), batch=8), data_config, seed=0)
  stats = pipeline.measure_throughput(it, num_batches=3, warmup=1)
  assert stats['batches'] == 3 and stats['examples_per_s'] > 0
