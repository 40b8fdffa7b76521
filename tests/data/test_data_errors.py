"""Each bad input gives one clear sentence, before any training starts."""

import dataclasses

import numpy as np
import pytest

from mmjax.core.tasks import Resolution, Task
from mmjax.data import pipeline, records
from mmjax.data.errors import DataError
from mmjax.data.sources import DataError as SourcesDataError

GOOD = Task(name='it', dataset='mmjax_digits', split='train', modalities=('image', 'text'),
            batch_size=8, resolutions=(Resolution(image_size=32, text_length=16),),
            classify=('image',), num_classes=10)


@pytest.fixture(scope='module')
def unlabelled(tmp_path_factory):
  folder = tmp_path_factory.mktemp('unlabelled')
  examples = [{'image': np.zeros((8, 8, 3), np.uint8), 'caption': np.array('a square')}] * 3
  records.write_records(folder / 'train.array_record', examples)
  return f'arrayrecord:{folder}/{{split}}.array_record'


def bad(**changes):
  return dataclasses.replace(GOOD, **changes)


CASES = [
    (dict(dataset='no_such_set'),
     r"Unknown dataset 'no_such_set': .* Prepared under .*: mmjax_digits\. .*tools\.build_data"),
    (dict(split='validation'),
     r"Dataset 'mmjax_digits' has no split 'validation'; its splits are \['test', 'train'\]\."),
    (dict(feature_map=(('pixels', 'image'),)),
     r"Task 'it': feature_map names feature 'pixels', which dataset 'mmjax_digits' does not "
     r'have; its features are: image \(image \[32, 32, 3\] uint8\), video'),
    (dict(feature_map=(('caption', 'image'),)),
     r"feature_map maps caption \(text \[\] object\) to 'image', which needs a feature of kind "
     'image'),
    (dict(feature_map=(('image', 'pixels'),)), r"maps 'image' to 'pixels', which is not one of"),
    (dict(modalities=('image', 'smell')), r"unknown modality 'smell'"),
    (dict(classify=('audio',)), r"classifies 'audio', which is not among its modalities"),
    (dict(num_classes=7), r'has num_classes=7 but dataset .* has 10 classes; set num_classes=10'),
    (dict(resolutions=(Resolution(image_size=32),)),
     r"feeds 'text' but its text_length is None; set config\.tasks\.it\.text_length"),
    (dict(dataset='arrayrecord:/nonexistent/x-{split}.ar'), r'no files match it for split'),
    (dict(batch_size=0), r'has batch_size 0'),
]


@pytest.mark.parametrize('changes,message', CASES, ids=[str(c[0])[:40] for c in CASES])
def test_validate_task_rejects(data_config, changes, message):
  with pytest.raises(DataError, match=message):
    pipeline.validate_task(bad(**changes), data_config)


def test_missing_modality_and_labels(data_config, unlabelled):
  task = bad(dataset=unlabelled, modalities=('image', 'audio'), classify=())
  with pytest.raises(DataError, match=r"asks for modality 'audio' but dataset .* has no audio "
                                      r'feature; its features are: image .*caption'):
    pipeline.validate_task(task, data_config)
  with pytest.raises(DataError, match=r'classifies with labels but dataset .* has no label'):
    pipeline.validate_task(bad(dataset=unlabelled, num_classes=0), data_config)


def test_missing_tokenizer_file(config_with):
  config = config_with()
  config.text.tokenizer = '/nonexistent/spm.model'
  with pytest.raises(DataError, match=r"SentencePiece model '/nonexistent/spm\.model' does not"):
    pipeline.validate_task(GOOD, config)


def test_batch_not_divisible_by_hosts(data_config):
  with pytest.raises(DataError, match=r'batch_size 8 is not divisible by the 3 processes'):
    pipeline.make_train_iterator(GOOD, data_config, seed=0, process_index=0, process_count=3)


def test_one_error_type():
  assert DataError is SourcesDataError and issubclass(DataError, ValueError)


def test_eval_errors_name_the_evaluation(data_config):
  with pytest.raises(DataError, match=r"Evaluation of 'mmjax_digits' feeds 'video' but its "
                                      r'num_frames is None; set its config\.evaluation'):
    pipeline.make_eval_batches('mmjax_digits', 'test', ('video',), Resolution(image_size=32),
                               data_config, batch_size=8)
  with pytest.raises(DataError, match=r'batch_size 9 must be divisible by the 2 processes'):
    pipeline.make_eval_batches('mmjax_digits', 'test', ('image',), Resolution(image_size=32),
                               data_config, batch_size=9, process_count=2)


def test_bad_data_options(config_with):
  with pytest.raises(DataError, match=r'config\.data\.crop_scale must be \(min, max\)'):
    pipeline.validate_task(GOOD, config_with(crop_scale=(0.5, 1.5)))
