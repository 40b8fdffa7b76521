"""The evaluation runner on the embedded dataset: report, plots, restore, CLI errors."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from mmjax.core import checkpointing
from mmjax.core import partitioning
from mmjax.core.tasks import Resolution
from mmjax.data import pipeline
from mmjax.data.digits import builder as digits_builder
from mmjax.evaluate import __main__ as cli, features, linear_probe, restore
from mmjax.evaluate import one_model as runner
from mmjax.evaluate.embedder import Embedder
from mmjax.evaluate.errors import EvalError
from mmjax.models.model import build_model
from mmjax.train import optimizer as optimizer_lib
from mmjax_testing import ROOT, demo_config


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  base = tmp_path_factory.getbasetemp()
  root = (base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base) / 'tfds'
  digits_builder.build(str(root))  # file-locked: safe when several workers build at once
  return str(root)


@pytest.fixture(scope='module')
def setup(data_dir):
  """A small eval config (image + 2-clip audio, probe on the test split) and a fresh model."""
  config = demo_config(f'--config.data_dir={data_dir}',
                       '--config.evaluation.datasets.digits.modalities=image,audio',
                       '--config.evaluation.datasets.digits.batch_size=64',
                       '--config.evaluation.datasets.digits.num_clips=2')
  config.evaluation.datasets.digits.probe_split = 'test'
  return config, build_model(config, nnx.Rngs(0))


def _clip_benchmark_recall(scores, positives, k):
  """CLIP_benchmark's rule: a query is right at k when a positive is among its top-k scores."""
  top = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  return float(np.mean(np.take_along_axis(positives, top, axis=1).any(axis=1)))


def _fewshot_lsr(train_x, train_y, test_x, test_y, classes, shots, seed, l2=1024.0):
  """big_vision's fewshot_lsr by its description, solved with np.linalg.solve."""
  rng = np.random.default_rng(seed)
  perms = [rng.permutation(np.where(train_y == c)[0]) for c in range(classes)]
  idx = np.concatenate([p[:shots] for p in perms])
  x = train_x[idx].astype(np.float64)
  mean, std = x.mean(0, keepdims=True), x.std(0, keepdims=True) + 1e-5
  pad = lambda a: np.concatenate([(a - mean) / std, np.full((len(a), 1), 100.0)], axis=1)
  y = 2.0 * np.eye(classes)[train_y[idx]] - 1.0
  xb = pad(x)
  w = np.linalg.solve(xb.T @ xb + l2 * np.eye(xb.shape[1]), xb.T @ y) if len(xb) >= xb.shape[1] \
      else xb.T @ np.linalg.solve(xb @ xb.T + l2 * np.eye(len(xb)), y)
  return float(np.mean(np.argmax(pad(test_x.astype(np.float64)) @ w, axis=1) == test_y))


def test_evaluate_params_writes_report_and_plots(setup, tmp_path):
  config, model = setup
  config = config.copy_and_resolve_references()
  config.evaluation.datasets.digits.few_shot = True
  rep = runner.evaluate_params(config, model, 7, str(tmp_path), save_features=True)
  with open(tmp_path / 'eval' / 'step_7.json') as f:
    assert json.load(f) == rep
  assert rep['step'] == 7
  assert set(rep['zero_shot']) == {'digits/image', 'digits/audio'}
  assert set(rep['retrieval']) == {'digits/image_to_text', 'digits/text_to_image',
                                   'digits/audio_to_text', 'digits/text_to_audio'}
  assert set(rep['linear_probe']) == {'digits/image', 'digits/audio'}
  for v in rep['zero_shot'].values():
    assert 0.0 <= v['top1'] <= v['top5'] <= 1.0
    assert v['top1'] < 0.25  # an untrained model is near chance (0.1) on held-out scans
  for v in rep['retrieval'].values():
    assert 0.0 <= v['R@1'] <= v['R@5'] <= v['R@10'] <= 1.0 and v['mean_rank'] >= 1.0
  # The probe trains and tests on the same split here, so it must fit well above chance (0.1).
  assert rep['linear_probe']['digits/image']['top1'] > 0.5
  prep = rep['preprocessing']
  assert prep['templates']['digits/audio'][0] == 'the sound of a {}.'
  assert prep['max_length'] == {'digits': 16} and prep['clips'] == {'digits': 2}
  assert prep['lowercase'] is True and prep['tokenizer']['pad_id'] == 0
  for m in ('image', 'audio'):
    assert os.path.getsize(tmp_path / 'eval' / 'plots' / f'confusion_digits_{m}_step_7.png') > 1000
    zs = rep['zero_shot'][f'digits/{m}']
    assert 0.0 <= zs['mean_per_class_recall'] <= 1.0
  # The config's own datasets make the 'config_datasets' suite: markdown and JSON tables, a chart.
  table = json.loads((tmp_path / 'eval' / 'config_datasets.json').read_text())
  assert [r['modality'] for r in table['rows']] == ['image', 'audio']
  assert [r['modality'] for r in table['retrieval_rows']] == ['image', 'audio']
  assert table['step'] == 7 and 'mmjax_version' in table
  assert '| digits |' in (tmp_path / 'eval' / 'config_datasets.md').read_text()
  assert os.path.getsize(tmp_path / 'eval' / 'config_datasets.png') > 1000
  # The probe chose its L2 on a held-out part of the probe split, from CLIP_benchmark's grid.
  assert rep['linear_probe']['digits/image']['l2'] in linear_probe.L2_GRID
  assert rep['datasets']['digits']['linear_probe']['image']['converged']
  # --save_features: every metric recomputed from the saved file with the field's own rules.
  saved = features.load(str(tmp_path / 'eval' / rep['datasets']['digits']['features']))
  pool = rep['datasets']['digits']['retrieval_pool']
  assert saved['text'].shape[0] == saved['text_item'].shape[0] == pool['captions']
  assert pool['candidates'] == pool['captions'] and 'CLIP_benchmark' in pool['rule']
  for m in ('image', 'audio'):
    emb = saved[m]
    assert emb.shape == (359, config.model.embed_dim) and saved['label'].shape == (359,)
    positives = saved['text_item'][None, :] == np.arange(len(emb))[:, None]
    scores = emb @ saved['text'].T
    for k in (1, 5, 10):
      assert rep['retrieval'][f'digits/{m}_to_text'][f'R@{k}'] == pytest.approx(
          _clip_benchmark_recall(scores, positives, k), abs=1e-9)
      assert rep['retrieval'][f'digits/text_to_{m}'][f'R@{k}'] == pytest.approx(
          _clip_benchmark_recall(scores.T, positives.T, k), abs=1e-9)
    shots = rep['few_shot'][f'digits/{m}']
    for k in (1, 5, 10, 25):
      assert shots[f'{k}shot']['l2'] == 1024.0
      want = np.mean([_fewshot_lsr(saved[f'{m}_features'], saved['label'],
                                   saved[f'{m}_features'], saved['label'], 10, k, seed)
                      for seed in (0, 1, 2)])
      assert abs(shots[f'{k}shot']['top1'] - want) < 1e-3   # within 0.1 points


def test_collect_keeps_dataset_order_and_unit_clip_embeddings(setup):
  config, model = setup
  graphdef, state = nnx.split(model)
  embedder = Embedder(config, graphdef, nnx.to_pure_dict(state),
                      partitioning.make_mesh(config.mesh))
  res = Resolution(image_size=32, audio_samples=4096, text_length=16)
  batches = pipeline.make_eval_batches('mmjax_digits', 'test', ('audio',), res, config,
                                       batch_size=48, num_clips=2)  # 359 = 7 * 48 + 23 padded
  data = embedder.collect(batches, ('audio',), num_clips=2)
  truth = [int(b['label'][i]) for b in pipeline.make_eval_batches(
      'mmjax_digits', 'test', (), res, config, batch_size=359) for i in range(359)]
  np.testing.assert_array_equal(data['label'], truth)
  assert data['audio']['embed'].shape == (359, config.model.embed_dim)
  assert data['audio']['features'].shape == (359, config.model.width)
  np.testing.assert_allclose(np.linalg.norm(data['audio']['embed'], axis=1), 1.0, rtol=1e-5)


def _save_state(workdir, config, model, step):
  params = nnx.to_pure_dict(nnx.state(model))
  opt = optimizer_lib.make_optimizer(config.optimizer)
  state = {'step': np.int32(step), 'params': params, 'opt_state': opt.init(params)}
  ckpt = checkpointing.Checkpointer(str(workdir), async_save=False)
  ckpt.save(step, state, {'agd_step': step}, force=True)
  ckpt.close()
  return params


def test_restore_params_gives_the_saved_weights(setup, tmp_path):
  config, model = setup
  saved = _save_state(tmp_path, config, model, 3)
  step, _, params = restore.restore_params(config, str(tmp_path),
                                           partitioning.make_mesh(config.mesh))
  assert step == 3
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(params), jax.device_get(saved))


def test_step_errors_name_the_available_steps(tmp_path):
  with pytest.raises(EvalError, match='no checkpoint in .*train first'):
    restore.choose_step(str(tmp_path))
  ckpt = checkpointing.Checkpointer(str(tmp_path), async_save=False)
  for s in (2, 4):
    ckpt.save(s, {'x': np.zeros(2, np.float32)}, {}, force=True)
  ckpt.close()
  assert restore.choose_step(str(tmp_path)) == 4
  with pytest.raises(EvalError, match='step 3 does not exist.*available steps: 2, 4'):
    restore.choose_step(str(tmp_path), 3)


def test_cli_without_checkpoint_is_one_sentence(tmp_path, capsys):
  code = cli.main([f'--config={os.path.join(ROOT, "configs/demo.py")}', f'--workdir={tmp_path}'])
  err = capsys.readouterr().err.strip()
  assert code != 0
  assert err.startswith('error: no checkpoint in') and err.count('\n') == 0


def test_dataset_without_labels_is_refused(setup, tmp_path, monkeypatch):
  config, model = setup
  real = pipeline.dataset_info
  monkeypatch.setattr(pipeline, 'dataset_info',
                      lambda *a, **k: dataclasses.replace(real(*a, **k), class_names=[]))
  with pytest.raises(EvalError, match='has no class labels.*zero_shot'):
    runner.evaluate_params(config, model, 1, str(tmp_path))


def test_checkpoint_from_eight_devices_evaluates_the_same_on_one(setup, tmp_path):
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  config, model = setup
  config = config.copy_and_resolve_references()
  config.evaluation.datasets.digits.linear_probe = False
  from mmjax.train import state as state_lib
  mesh8 = partitioning.make_mesh({'data': 8})
  graphdef, _, shardings = state_lib.abstract_train_state(config, mesh8)
  state = state_lib.create_train_state(config, mesh8, graphdef, shardings)
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(3, state, {})
  ckpt.close()
  reports = []
  for mesh in (mesh8, partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])):
    step, graphdef, params = restore.restore_params(config, str(tmp_path), mesh)
    reports.append(runner.evaluate_params(config, (graphdef, params), step, None, mesh))
  assert reports[0]['zero_shot'] == reports[1]['zero_shot']
  # Retrieval ranks of an untrained model sit on near-ties that float reductions in another
  # order may flip: at most one rank position of one query apart.
  for key, metrics in reports[0]['retrieval'].items():
    for name, value in metrics.items():
      assert value == pytest.approx(reports[1]['retrieval'][key][name], rel=1e-3, abs=1e-9)
