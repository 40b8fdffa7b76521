"""Sources other than the embedded dataset by name: ArrayRecord globs and other TFDS dirs."""

import shutil

import numpy as np
import pytest

from mmjax.core.tasks import Resolution, Task
from mmjax.data import pipeline, records, sources
from mmjax.data.digits.builder import MmjaxDigits

VERSION = str(MmjaxDigits.VERSION)

CLASSES = ['cat', 'dog', 'bird']


@pytest.fixture(scope='module')
def npz_glob(tmp_path_factory):
  """Simple-format records with nested names, gray non-square video, ragged int16 audio,
  several captions per example, and label names in classes.txt."""
  folder = tmp_path_factory.mktemp('npz')
  rng = np.random.default_rng(0)
  for split, n in (('train', 10), ('test', 5)):
    examples = [{
        'media/frames': rng.integers(0, 256, (6, 20, 24, 1), dtype=np.uint8),
        'media/sound': rng.integers(-3000, 3000, rng.integers(1000, 3000), dtype=np.int16),
        'meta/captions': np.array([f'a {CLASSES[i % 3]} number {i}', f'{CLASSES[i % 3]} again']),
        'label': np.int64(i % 3),
    } for i in range(n)]
    records.write_records(folder / f'{split}.array_record', examples, CLASSES)
  return f'arrayrecord:{folder}/{{split}}.array_record'


@pytest.fixture()
def npz_config(data_config, digits_dir):
  """The simple records ship no tokenizer: name the embedded dataset's model explicitly."""
  data_config.text.tokenizer = sources.tokenizer_file('mmjax_digits', digits_dir)
  return data_config


def test_tfds_serialized_array_record_glob(data_config, digits_dir):
  name = f'arrayrecord:{digits_dir}/mmjax_digits/{VERSION}/mmjax_digits-{{split}}.array_record-*'
  direct = sources.open_source(name, 'test', digits_dir)
  by_name = sources.open_source('mmjax_digits', 'test', digits_dir)
  assert len(direct) == 359 and direct.features == by_name.features
  a, b = direct.read([3, 100], ['video', 'caption']), by_name.read([3, 100], ['video', 'caption'])
  assert np.array_equal(a['video'], b['video']) and list(a['caption']) == list(b['caption'])
  info = pipeline.dataset_info(name, data_config, 'test')
  assert info.class_names[3] == 'three' and info.tokenizer_file is not None
  t = Task(name='ar', dataset=name, split='train', modalities=('audio', 'text'), batch_size=8,
           resolutions=(Resolution(audio_samples=1024, text_length=12),))
  batch = next(pipeline.make_train_iterator(t, data_config, seed=0))
  assert batch['audio'].shape == (8, 1024) and batch['text'].shape == (8, 12)


def test_simple_records_with_feature_map(npz_glob, npz_config):
  data_config = npz_config
  info = pipeline.dataset_info(npz_glob, data_config)
  assert info.class_names == CLASSES and info.splits == {'train': 10}
  assert set(info.modalities) == {'video', 'audio', 'text', 'label'}
  fmap = (('media/frames', 'video'), ('media/sound', 'audio'), ('meta/captions', 'text'))
  t = Task(name='np', dataset=npz_glob, split='train', modalities=('video', 'audio', 'text'),
           batch_size=4, classify=('video',), num_classes=3, feature_map=fmap,
           resolutions=(Resolution(image_size=16, num_frames=4, audio_samples=2048,
                                   text_length=8),))
  pipeline.validate_task(t, data_config)
  batch = next(pipeline.make_train_iterator(t, data_config, seed=0))
  assert batch['video'].shape == (4, 4, 16, 16, 3) and batch['audio'].shape == (4, 2048)
  assert batch['text'].shape == (4, 8) and batch['label'].dtype == np.int32
  assert np.all(batch['video'][..., 0] == batch['video'][..., 2])  # gray -> 3 channels


def test_eval_pads_short_audio_and_uses_the_first_caption(npz_glob, npz_config):
  data_config = npz_config
  res = Resolution(audio_samples=4096, text_length=8)
  fmap = (('media/sound', 'audio'), ('meta/captions', 'text'))
  batch = next(iter(pipeline.make_eval_batches(npz_glob, 'test', ('audio', 'text'), res,
                                               data_config, batch_size=8, feature_map=fmap)))
  raw = sources.open_source(npz_glob, 'test').read(range(5), ['media/sound'])['media/sound']
  for i, wave in enumerate(raw):
    np.testing.assert_array_equal(batch['audio'][i, :len(wave)], wave)  # int16 kept as is
    assert np.all(batch['audio'][i, len(wave):] == 0)
  assert batch['valid'].tolist() == [True] * 5 + [False] * 3
  tokenizer = pipeline.load_tokenizer(data_config, 'mmjax_digits')
  first = [f'a {CLASSES[i % 3]} number {i}' for i in range(5)]
  assert np.array_equal(batch['text'][:5], tokenizer.encode(first, 8)[0])


def test_any_prepared_tfds_dataset_by_name(digits_dir, tmp_path):
  shutil.copytree(f'{digits_dir}/mmjax_digits/{VERSION}', tmp_path / 'my_digits' / VERSION)
  assert sources.local_datasets(str(tmp_path)) == ['my_digits']
  for name in ('my_digits', f'my_digits:{VERSION}'):
    src = sources.open_source(name, 'test', str(tmp_path))
    assert len(src) == 359 and src.features['label'].class_names[0] == 'zero'
