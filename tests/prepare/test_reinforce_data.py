"""MobileCLIP reinforcement: the tools.reinforce_data CLI on a tiny dataset with tiny teacher
exports, its stored features against running the exports directly, the loader's replay of the
stored crops, and the refusals (exit 2, nothing written)."""

import json
import os

import numpy as np
import pytest

import reinforce_fixtures as F
from mmjax import config as config_lib
from mmjax.core.tasks import Resolution
from mmjax.data import reinforced as R, sources, transforms as T
from mmjax.data.batching import BatchBuilder
from mmjax.data.options import DataOptions
from mmjax.export.load import load_model
from mmjax.data.tokenizer import Tokenizer
from mmjax.train import loop
from mmjax_testing import ROOT
from tools import reinforce_data

K = 3


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  tmp = str(tmp_path_factory.mktemp('reinforce'))
  data = os.path.join(tmp, 'data')
  F.write_dataset(data)
  teachers = [F.make_teacher(tmp, data, 0, 'a'), F.make_teacher(tmp, data, 1, 'b')]
  out = os.path.join(tmp, 'out')
  rc = reinforce_data.main([f'--teacher={",".join(teachers)}', f'--dataset={F.NAME}',
                            f'--output={out}', f'--data_dir={data}', f'--augmentations={K}'])
  assert rc == 0
  return {'tmp': tmp, 'data': data, 'teachers': teachers, 'out': out}


def _l2(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_features_and_teacher_embeddings_match_the_exports(built):
  plain = sources.open_source(F.NAME, 'train', built['data'])
  rein = sources.open_source(f'{F.NAME}_reinforced', 'train', built['out'])
  assert len(rein) == F.SIZES['train'] and set(plain.features) < set(rein.features)
  assert rein.features['label'].class_names == F.CLASSES
  idx = np.arange(len(rein))
  cols = rein.read(idx, ['image', 'caption', 'label', R.CROP, R.FLIP, 'teacher_image',
                         'teacher_text'])
  orig = plain.read(idx, ['image', 'caption', 'label'])
  np.testing.assert_array_equal(cols['image'], orig['image'])   # originals copied unchanged
  assert list(cols['caption']) == list(orig['caption'])
  crops = cols[R.CROP]
  assert crops.shape == (10, K, 4) and cols[R.FLIP].shape == (10, K)
  assert cols['teacher_image'].shape == (10, K, 128) and cols['teacher_text'].shape == (10, 1, 128)
  assert (crops[..., 2] <= 20).all() and (crops[..., 3] <= 28).all() and (crops >= 0).all()
  assert len({tuple(c) for c in crops.reshape(-1, 4).round(3)}) == 10 * K  # all different
  images, texts = [], []
  for path in built['teachers']:
    model, config = load_model(path)
    pixels = T.crop_resize(np.repeat(orig['image'], K, 0), crops.reshape(-1, 4).astype(np.float64),
                           32)
    images.append(np.asarray(model.embed({'image': pixels}, 'image')).reshape(10, K, -1))
    tok = Tokenizer(os.path.join(path, 'tokenizer.model'), True)
    ids, mask = tok.encode(list(orig['caption']), 16)
    texts.append(np.asarray(model.embed({'text': ids, 'text_mask': mask}, 'text')))
  assert not np.allclose(images[0], images[1], atol=1e-3)  # two different teachers
  np.testing.assert_allclose(cols['teacher_image'], _l2(np.mean(images, 0)), atol=2e-5)
  np.testing.assert_allclose(cols['teacher_text'][:, 0], _l2(np.mean(texts, 0)), atol=2e-5)


def test_the_loader_replays_a_stored_crop_with_its_teacher_embedding(built):
  rein = sources.open_source(f'{F.NAME}_reinforced', 'train', built['out'])
  tok = Tokenizer(rein.tokenizer_path, True)
  builder = BatchBuilder(rein, {'image': 'image', 'text': 'caption'}, Resolution(16, None, None, 8),
                         DataOptions(), tok, reinforced=True)
  idx = np.arange(len(rein))
  cols = rein.read(idx, ['image', 'caption', R.CROP, 'teacher_image', 'teacher_text'])
  chosen = set()
  for seed in range(4):
    batch = builder(idx, np.random.default_rng(seed))
    for i in idx:
      # the replayed pixels are exactly the crop of one stored augmentation k ...
      ks = [k for k in range(K) if np.array_equal(
          batch['image'][i], T.crop_resize(cols['image'][i:i + 1],
                                           cols[R.CROP][i, k:k + 1].astype(np.float64), 16)[0])]
      assert len(ks) == 1, (seed, i)
      chosen.add(ks[0])
      # ... and the batch carries that augmentation's teacher embedding, and the text's
      np.testing.assert_array_equal(batch['teacher_image'][i], cols['teacher_image'][i, ks[0]])
      np.testing.assert_array_equal(batch['teacher_text'][i], cols['teacher_text'][i, 0])
    np.testing.assert_array_equal(batch['text'], tok.encode(list(cols['caption']), 8)[0])
  assert chosen == set(range(K))


def _main(capsys, *args):
  rc = reinforce_data.main(list(args))
  return rc, capsys.readouterr().err.strip().splitlines()


def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(built, tmp_path, capsys):
  out = tmp_path / 'new'
  teacher, data = built['teachers'][0], built['data']
  rc, err = _main(capsys, f'--teacher={tmp_path / "nope"}', f'--dataset={F.NAME}',
                  f'--output={out}', f'--data_dir={data}')
  assert rc == 2 and len(err) == 1 and 'does not exist' in err[0] and not out.exists()
  rc, err = _main(capsys, f'--teacher={teacher}', '--dataset=no_such_dataset',
                  f'--output={out}', f'--data_dir={data}')
  assert rc == 2 and len(err) == 1 and 'Unknown dataset' in err[0] and not out.exists()
  before = sorted(os.listdir(built['out']))
  rc, err = _main(capsys, f'--teacher={teacher}', f'--dataset={F.NAME}',
                  f'--output={built["out"]}', f'--data_dir={data}')
  assert rc == 2 and len(err) == 1 and 'already exists' in err[0]
  assert sorted(os.listdir(built['out'])) == before


def test_mobileclip_trains_on_the_reinforced_copy(built, tmp_path):
  config = config_lib.load_config(os.path.join(ROOT, 'configs/mobileclip.py'), [
      '--config.model.num_layers=1', '--config.total_steps=2', '--config.log_every=1',
      '--config.data.threads=1', f'--config.data_dir={built["out"]}',
      f'--config.tasks.image_text.dataset={F.NAME}_reinforced',
      '--config.tasks.image_text.batch_size=8', '--config.tasks.image_text.text_length=8'])
  result = loop.train(config, str(tmp_path / 'run'))
  assert result['step'] == 2
  rows = [r for r in map(json.loads, open(tmp_path / 'run' / 'metrics.jsonl')) if 'loss' in r]
  assert rows and all(np.isfinite(r['distill/image_text']) and r['distill/image_text'] > 0
                      for r in rows)
