"""The dataset's SentencePiece model and the lowercase policy."""

import numpy as np
import pytest

from mmjax.data.digits import render
from mmjax.data import pipeline, sources
from mmjax.data.tokenizer import PAD_ID, UNK_ID, Tokenizer

PROMPTS = ('a photo of the number {}.', 'a drawing of a {}', 'A Photo Of The Number {}.',
           'itap of a {}', 'a blurry photo of the {}')


@pytest.fixture(scope='module')
def tokenizer(digits_dir):
  return pipeline.load_tokenizer({'data_dir': digits_dir}, 'mmjax_digits')


def test_loaded_from_the_dataset(tokenizer, digits_dir):
  info = tokenizer.describe()
  assert info['model_file'] == sources.tokenizer_file('mmjax_digits', digits_dir)
  assert info['lowercase'] is True and info['pad_id'] == PAD_ID == 0
  assert 64 <= tokenizer.vocab_size <= 256


def test_round_trip_of_captions(tokenizer, digits_dir):
  src = sources.open_source('mmjax_digits', 'test', digits_dir)
  captions = list(src.read(range(len(src)), ['caption'])['caption'])
  ids, mask = tokenizer.encode(captions, 16)
  assert ids.dtype == np.int32 and mask.dtype == np.int32 and ids.shape == (len(captions), 16)
  assert mask.sum(1).max() < 16                   # every caption fits in 16 tokens
  assert np.array_equal(mask, (ids != PAD_ID).astype(np.int32))
  assert not np.any(ids == UNK_ID)
  assert tokenizer.decode(ids) == captions


def test_class_names_encode_the_same_everywhere(tokenizer):
  for name in render.CLASS_NAMES:
    alone = tokenizer.tokens(name)
    assert alone == [f'\u2581{name}'], alone       # one whole-word piece
    for template in render.TEMPLATES + PROMPTS:
      pieces = tokenizer.tokens(template.format(name.upper() if 'Photo' in template else name))
      assert alone[0] in pieces, (template, pieces)
    ids, _ = tokenizer.encode([p.format(name) for p in PROMPTS], 16)
    assert not np.any(ids == UNK_ID)               # unseen English prompts stay in vocabulary


def test_truncation_and_padding(tokenizer):
  ids, mask = tokenizer.encode(['a handwritten seven', ''], 3)
  assert mask.tolist() == [[1, 1, 1], [0, 0, 0]]
  ids, mask = tokenizer.encode(['seven'], 4)
  assert mask.tolist() == [[1, 0, 0, 0]] and ids[0, 1:].tolist() == [0, 0, 0]


def test_lowercase_policy(digits_dir, tokenizer):
  cased = Tokenizer(tokenizer.model_file, lowercase=False)
  assert tokenizer.encode(['SEVEN'], 4)[0].tolist() == tokenizer.encode(['seven'], 4)[0].tolist()
  assert cased.encode(['SEVEN'], 4)[0].tolist() != cased.encode(['seven'], 4)[0].tolist()
  config = {'data_dir': digits_dir, 'text': {'lowercase': False}}
  assert pipeline.load_tokenizer(config, 'mmjax_digits').describe()['lowercase'] is False


def test_pickles_for_loader_worker_processes(tokenizer):
  import pickle
  copy = pickle.loads(pickle.dumps(tokenizer))
  texts = [p.format('seven') for p in PROMPTS]
  assert copy.model_file == tokenizer.model_file and copy.lowercase == tokenizer.lowercase
  for a, b in zip(copy.encode(texts, 12), tokenizer.encode(texts, 12)):
    np.testing.assert_array_equal(a, b)


def test_no_dataset_is_built_for_its_tokenizer_and_a_missing_data_dir_is_named(tmp_path):
  """Without config.text.tokenizer and without a dataset, nothing is built to take a tokenizer
  from (mmjax_digits used to be built as a fallback); a data dir that does not exist is named."""
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(sources.DataError, match=r"config.text.tokenizer is '' and the config names "
                     r'no dataset'):
    pipeline.load_tokenizer({'data_dir': str(empty)})
  assert not list(empty.iterdir())
  missing = tmp_path / 'typo'
  with pytest.raises(sources.DataError, match=f'data_dir {missing} does not exist'):
    pipeline.load_tokenizer({'data_dir': str(missing)}, 'mmjax_digits')
  with pytest.raises(sources.DataError, match=f'data_dir {missing} does not exist'):
    sources.open_source('mmjax_digits', 'train', str(missing))
  assert not missing.exists()
