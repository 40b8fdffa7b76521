"""MultiMAE task: the Dirichlet split of the visible-token budget as the model uses it, the
encoder seeing visible tokens only, the loss against numpy, config errors, and the train CLI
with MultiMAE next to contrastive tasks on mmjax_digits."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from mmjax import config as config_lib
from mmjax.core.tasks import task_signatures
from mmjax.models.model import build_model
from mmjax.models.multimae import multimae_outputs
from mmjax.models.multimae_masking import split_visible_budget
from mmjax.train import objectives
from mmjax.train.__main__ import main as train_main
from mmjax_testing import ROOT, synthetic_batch

MODS = ('image', 'video', 'audio')
TOKENS = {'image': 16, 'video': 32, 'audio': 28}


def mae_config(*overrides, arg=''):
  return config_lib.load_config(os.path.join(ROOT, 'configs/multimae.py') + arg,
                                ['--config.model.num_layers=1', *overrides])


@pytest.fixture(scope='module')
def setup():
  config = mae_config()
  model = build_model(config, nnx.Rngs(0))
  task = task_signatures(config)[0]
  return config, model, task, synthetic_batch(task, seed=0, batch_size=16)


def test_counts_follow_the_dirichlet_shares():
  key, budget, b = jax.random.key(5), 24, 256
  counts = split_visible_budget(key, TOKENS, budget, 1.0, b)
  c = np.stack([np.asarray(counts[m]) for m in MODS], -1)
  shares = np.asarray(jax.random.dirichlet(key, np.ones(3), (b,)))  # the same draw
  capped = (c == np.array(list(TOKENS.values()))).any(-1)
  assert capped.sum() < b // 4
  # Largest-remainder rounding: each count within one token of share * budget; sums exact.
  assert np.all(np.abs(c - shares * budget)[~capped] < 1.0)
  np.testing.assert_array_equal(c[~capped].sum(-1), budget)
  assert np.all(c[capped].sum(-1) <= budget)
  # Shares vary from example to example.
  assert c.std(0).min() > 2 and len({tuple(r) for r in c}) > b // 2


def test_model_shows_each_example_its_budget(setup):
  config, model, task, batch = setup
  rng = jax.random.key(11)
  out, _ = multimae_outputs(model, batch, task, rng)
  vis = np.stack([np.asarray(1 - out[m]['mask']).sum(-1) for m in MODS], -1)     # [b, 3]
  shares = np.asarray(jax.random.dirichlet(jax.random.fold_in(rng, 0), np.ones(3), (16,)))
  capped = (vis == np.array(list(TOKENS.values()))).any(-1)
  np.testing.assert_array_equal(vis[~capped].sum(-1), task.visible_tokens)
  assert np.all(np.abs(vis - shares * task.visible_tokens)[~capped] < 1.0)
  for m in MODS:
    assert out[m]['pred'].shape == out[m]['target'].shape == (16, TOKENS[m], out[m]['pred'].shape[-1])


def test_encoder_sees_visible_tokens_only(setup):
  """Rewriting the masked image patches changes the targets but no prediction; rewriting a
  visible one changes them."""
  _, model, task, batch = setup
  rng = jax.random.key(3)
  out, _ = multimae_outputs(model, batch, task, rng)
  masked = np.asarray(out['image']['mask']).reshape(16, 4, 4)
  noise = np.random.default_rng(1).integers(0, 256, batch['image'].shape).astype(np.uint8)
  pix = np.kron(masked, np.ones((8, 8), int)).astype(bool)[..., None]           # [b, 32, 32, 1]
  hidden = dict(batch, image=np.where(pix, noise, batch['image']))
  out2, _ = multimae_outputs(model, hidden, task, rng)
  assert not np.allclose(out2['image']['target'], out['image']['target'])
  for m in MODS:
    np.testing.assert_allclose(out2[m]['pred'], out[m]['pred'], atol=1e-5, err_msg=m)
  shown = dict(batch, image=np.where(pix, batch['image'], noise))
  out3, _ = multimae_outputs(model, shown, task, rng)
  assert not np.allclose(out3['image']['pred'], out['image']['pred'], atol=1e-3)


def test_loss_is_the_masked_patch_mse(setup):
  config, model, task, batch = setup
  outputs = model(batch, task, rng=jax.random.key(0), train=True)
  loss, parts = objectives.task_loss(model, outputs, batch, task, config)
  total = 0.0
  for m in MODS:
    r = jax.device_get(outputs['reconstruction'][m])
    err = ((r['pred'].astype(np.float64) - r['target']) ** 2).mean(-1)
    want = (err * r['mask']).sum() / r['mask'].sum()
    np.testing.assert_allclose(float(parts[f'mae/{m}']), want, rtol=1e-5)
    total += want
  np.testing.assert_allclose(float(loss), total, rtol=1e-5)


@pytest.mark.parametrize('override,match', [
    ('--config.tasks.multimae.multimae=image,text', 'multimae names'),
    ('--config.tasks.multimae.visible_tokens=0', 'visible_tokens'),
    ('--config.tasks.multimae.visible_tokens=77', 'exceeds the 76 tokens'),
    ("--config.tasks.multimae.classify=image", 'also sets'),
    ("--config.model.encoder_sharing=per_modality", 'one sequence'),
])
def test_bad_multimae_settings_are_refused(override, match):
  with pytest.raises(config_lib.ConfigError, match=match):
    mae_config(override)


def test_train_cli_runs_multimae_next_to_contrastive_tasks(tmp_path):
  """`python -m mmjax.train --config=configs/multimae.py:agd` on mmjax_digits, round robin so
  every task takes a step: the MultiMAE task and the contrastive ones share the encoder."""
  small = [f'--config.tasks.{t}.batch_size=8' for t in
           ('multimae', 'image_text', 'video_text', 'audio_text')]
  rc = train_main([f'--config={ROOT}/configs/multimae.py:agd', f'--workdir={tmp_path}',
                   '--config.total_steps=4', '--config.log_every=1', '--config.checkpoint_every=4',
                   '--config.agd.mode=round_robin', '--config.model.num_layers=1',
                   '--config.model.mae_decoder.layers=1',
                   '--config.data.threads=1', *small])
  assert rc in (0, None)
  rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  rows = {r['task'].split('@')[0]: r for r in rows if 'loss' in r}
  assert set(rows) == {'multimae', 'image_text', 'video_text', 'audio_text'}
  assert all(np.isfinite(r['loss']) for r in rows.values())
  mae = rows['multimae']
  np.testing.assert_allclose(mae['loss'], sum(mae[f'mae/{m}'] for m in MODS), rtol=1e-5)
  assert 'nce/image_text' in rows['image_text']
  assert (tmp_path / 'checkpoints' / '4').is_dir()
