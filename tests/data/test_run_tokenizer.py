"""One tokenizer per run: text tasks on datasets converted with different tokenizers are refused
before anything is written, and a workdir refuses to resume or evaluate with another."""

import os

import ml_collections
import numpy as np
import pytest

from mmjax.config.defaults import base_config, task
from mmjax.data import pipeline, run_tokenizer
from mmjax.data.errors import DataError
from mmjax.data.tokenizer import file_hash, train_sentencepiece
from photo_fixtures import pixels, png, write_dataset


def _dataset(root: str, name: str, words: list[str]) -> str:
  write_dataset(root, name, [png(pixels(i, 8, 8)) for i in range(2)],
                captions=[[w] for w in words[:2]])
  path = os.path.join(root, name, '1.0.0', 'tokenizer.model')
  train_sentencepiece(words * 4, path, 24)
  return path


@pytest.fixture
def two(tmp_path):
  root = str(tmp_path / 'data')
  a = _dataset(root, 'videos', ['a red car drives', 'a blue bus stops'])
  b = _dataset(root, 'sounds', ['a dog barks loudly', 'rain on the roof'])
  assert file_hash(a) != file_hash(b)
  c = base_config()
  c.data_dir = root
  c.model.vocab_size = 512
  for name in ('videos', 'sounds'):
    c.tasks[name] = task(name, 'image,text', 8, contrast='image-text', image_size=8,
                         text_length=8)
  return c, a, b


def test_datasets_with_different_tokenizers_are_refused_in_one_sentence(two, tmp_path):
  from mmjax.train import loop
  config, a, b = two
  with pytest.raises(DataError, match=r"^Tasks 'sounds' and 'videos' read datasets 'sounds' and "
                     r"'videos', which were converted with different tokenizers .* set "
                     r'config\.text\.tokenizer to the \.model file'):
    loop.preflight(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()                   # nothing written
  config.text.tokenizer = a                                # named once: all text uses it
  assert pipeline.load_tokenizer(config).model_file == a
  loop.preflight(config, str(tmp_path / 'run'))


def test_same_tokenizer_content_in_two_datasets_is_fine(two):
  config, a, b = two
  with open(a, 'rb') as f:
    data = f.read()
  with open(b, 'wb') as f:
    f.write(data)
  assert pipeline.load_tokenizer(config).sha256 == file_hash(a)


def test_a_workdir_refuses_another_tokenizer(two, tmp_path):
  config, a, b = two
  config.text.tokenizer = a
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  run_tokenizer.record(config, workdir)
  assert run_tokenizer.recorded(workdir)['sha256'] == file_hash(a)
  run_tokenizer.check_run(config, workdir, 'resume')        # the same one: fine
  config.text.tokenizer = b
  for doing in ('resume', 'evaluate'):
    with pytest.raises(DataError, match=rf'^Cannot {doing} .*run: it was trained with tokenizer '
                       r'.* \(sha256 [0-9a-f]{12}\) but this config tokenises with .*sounds'):
      run_tokenizer.check_run(config, workdir, doing)
  from mmjax.evaluate import one_model as runner
  with pytest.raises(DataError, match='^Cannot evaluate'):
    runner.evaluate_checkpoint(config, workdir)             # before any checkpoint is read
  # A tokenizer.model retrained in place is another tokenizer, too.
  config.text.tokenizer = a
  train_sentencepiece(['entirely new words here'] * 4, a, 24)
  pipeline._tokenizer.cache_clear()
  with pytest.raises(DataError, match='^Cannot resume'):
    run_tokenizer.check_run(config, workdir, 'resume')


def test_a_run_without_text_records_nothing(tmp_path):
  config = ml_collections.ConfigDict({'tasks': {'cls': {'dataset': 'x', 'modalities': 'image'}}})
  run_tokenizer.record(config, str(tmp_path))
  assert not (tmp_path / run_tokenizer.RECORD).exists()
  assert np.asarray(os.listdir(tmp_path)).size == 0
