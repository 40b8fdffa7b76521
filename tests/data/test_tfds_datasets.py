"""Real TFDS datasets' specs, prepared as `tfds build` leaves them, through the real code path.

`tfds_mock.py` writes imagenette, coco_captions, ucf101 and speech_commands (fake examples,
the real feature specs, TFRecord or ArrayRecord shards) without TF or downloads; the train
loop then runs steps on all four and evaluates (zero-shot and retrieval) on their test splits.
One imagenette training image is truncated: it is skipped and counted, not fatal.
"""

import json
import os

import numpy as np
import pytest

import tfds_mock
from mmjax import config as config_lib
from mmjax.config.defaults import base_config, eval_dataset, task
from mmjax.data import sources
from mmjax.data.digits.builder import MmjaxDigits
from mmjax.data.errors import DataError
from mmjax.evaluate import one_model as runner
from mmjax.train import loop

FORMATS = {'imagenette': 'tfrecord', 'coco_captions': 'array_record', 'ucf101': 'tfrecord',
           'speech_commands': 'array_record'}


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('tfds'))
  names = {n: tfds_mock.prepare(root, n, {'train': 12, 'test': 8}, fmt,
                                truncated={'train': (5,)} if n == 'imagenette' else None)
           for n, fmt in FORMATS.items()}
  return root, names


def test_tfrecord_and_arrayrecord_builds_read_the_same(tmp_path):
  columns = {}
  for fmt in ('tfrecord', 'array_record'):
    root = str(tmp_path / fmt)
    name = tfds_mock.prepare(root, 'coco_captions', {'train': 7}, fmt, seed=3)
    source = sources.open_source(name, 'train', root)
    assert source.file_format == fmt and len(source) == 7
    columns[fmt] = source.read([6, 0, 3], ['image', 'captions/text', 'image/id'])
  a, b = columns['tfrecord'], columns['array_record']
  assert list(a['image']) == list(b['image']) and a['image'][0][:3] == b'\xff\xd8\xff'  # JPEG
  assert [list(c) for c in a['captions/text']] == [list(c) for c in b['captions/text']]
  assert len(a['captions/text'][0]) == 10 and isinstance(a['captions/text'][0][0], str)
  np.testing.assert_array_equal(a['image/id'], b['image/id'])


def test_a_known_but_unprepared_dataset_says_how_to_build_it(tmp_path):
  with pytest.raises(DataError, match=r'run `tfds build ucf101 --data_dir=') as e:
    sources.open_source('ucf101', 'train', str(tmp_path))
  assert 'TensorFlow' in str(e.value)


@pytest.mark.slow
def test_train_steps_and_evaluation_on_four_real_specs(prepared, digits_dir, tmp_path):
  root, names = prepared
  c = base_config()
  c.data_dir = root
  c.total_steps, c.log_every, c.checkpoint_every, c.eval_every = 8, 1, 8, 8
  c.agd.mode = 'round_robin'
  c.text.tokenizer = os.path.join(digits_dir, 'mmjax_digits', str(MmjaxDigits.VERSION),
                                  'tokenizer.model')
  c.model.update(num_layers=1, embed_dim=32, patch_size=8, max_grid=4, max_text_length=8,
                 vocab_size=512, tubelet_frames=2)
  c.data.threads = 1
  img = dict(image_size=32)
  c.tasks.imagenette = task(names['imagenette'], 'image', 8, classify='image', num_classes=10,
                            **img)
  c.tasks.coco = task(names['coco_captions'], 'image,text', 8, contrast='image-text',
                      text_length=8, **img)
  c.tasks.ucf101 = task(names['ucf101'], 'video', 8, classify='video', num_classes=101,
                        num_frames=4, **img)
  c.tasks.speech = task(names['speech_commands'], 'audio', 8, classify='audio', num_classes=12,
                        audio_samples=8000)
  ev = c.evaluation.datasets
  ev.imagenette = eval_dataset(names['imagenette'], 'image', batch_size=8, text_length=8, **img)
  ev.ucf101 = eval_dataset(names['ucf101'], 'video', batch_size=8, text_length=8,
                           num_frames=4, **img)
  ev.speech = eval_dataset(names['speech_commands'], 'audio', batch_size=8, text_length=8,
                           audio_samples=8000)
  ev.coco = eval_dataset(names['coco_captions'], 'image', batch_size=8, text_length=8,
                         zero_shot=False, **img)
  config_lib.resolve(c)
  out = loop.train(c, str(tmp_path), evaluate=runner.evaluate_params)
  assert out['step'] == 8
  rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  losses = [r['loss'] for r in rows if 'loss' in r]
  assert len(losses) == 8 and np.all(np.isfinite(losses))
  last = [r for r in rows if 'tasks/coco/steps' in r][-1]
  assert [last[f'tasks/{t}/steps'] for t in ('coco', 'imagenette', 'speech', 'ucf101')] == [2] * 4
  assert last['tasks/imagenette/skipped_examples'] >= 1   # 16 draws from 12 examples
  evals = {k: v for r in rows for k, v in r.items() if k.startswith('eval/zero_shot/')}
  assert sorted(evals) == [f'eval/zero_shot/{n}/{m}/top1' for n, m in
                           (('imagenette', 'image'), ('speech', 'audio'), ('ucf101', 'video'))]
  assert all(0.0 <= v <= 1.0 for v in evals.values())
