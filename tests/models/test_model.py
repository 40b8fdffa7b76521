"""The multimodal model: shapes, masks, resolutions, variants, log-mel, kernel switch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax.core.tasks import task_signatures
from mmjax.models import audio_features
from mmjax.models.model import build_model, drop_tokens
from mmjax_testing import demo_config, synthetic_batch


_forward = nnx.jit(lambda model, batch, task: model(batch, task), static_argnums=2)
_embed = nnx.jit(lambda model, batch, modality: model.embed(batch, modality), static_argnums=2)


def _model(*overrides):
  config = demo_config('--config.model.num_layers=2', *overrides)
  return config, build_model(config, nnx.Rngs(0))


def _task(config, name):
  return next(t for t in task_signatures(config) if t.name == name)


def test_outputs_per_modality_are_unit_vectors():
  config, model = _model()
  for name in ('image_text', 'video_text', 'audio_text'):
    task = _task(config, name)
    out = _forward(model, synthetic_batch(task), task)
    for m in task.modalities:
      e = out['embeddings'][m]
      assert e.shape == (task.batch_size, config.model.embed_dim)
      np.testing.assert_allclose(jnp.linalg.norm(e, axis=-1), 1.0, rtol=1e-5)
  task = _task(config, 'image_classify')
  logits = _forward(model, synthetic_batch(task), task)['logits']
  assert logits['image'].shape == (task.batch_size, 10)


def test_text_padding_does_not_change_the_embedding():
  _, model = _model()
  ids = np.array([[5, 9, 17, 0, 0, 0, 0, 0]], np.int32)
  mask = (ids > 0).astype(np.int32)
  base = _embed(model, {'text': ids, 'text_mask': mask}, 'text')
  noisy = ids.copy()
  noisy[0, 3:] = [44, 3, 71, 8, 2]            # garbage where the mask is 0
  np.testing.assert_allclose(_embed(model, {'text': noisy, 'text_mask': mask}, 'text'), base,
                             atol=1e-5)
  longer = np.pad(ids, ((0, 0), (0, 8)))
  np.testing.assert_allclose(_embed(model, {'text': longer, 'text_mask': (longer > 0).astype(
      np.int32)}, 'text'), base, atol=1e-5)


def test_one_model_serves_several_resolutions():
  _, model = _model()
  for size in (16, 32, 64):
    e = _embed(model, {'image': np.random.default_rng(0).normal(size=(2, size, size, 3))}, 'image')
    assert e.shape == (2, 128) and np.all(np.isfinite(e))
  with pytest.raises(ValueError, match='not a multiple of the patch size 8'):
    _embed(model, {'image': np.zeros((1, 30, 30, 3))}, 'image')
  with pytest.raises(ValueError, match='max_grid=8'):
    _embed(model, {'image': np.zeros((1, 72, 72, 3))}, 'image')


@pytest.mark.parametrize('overrides', [
    ('--config.model.encoder_sharing=per_modality',),
    ('--config.model.pooling=cls', '--config.model.qk_norm=true'),
    ('--config.model.dtype=bfloat16',),
    ('--config.model.audio.features=waveform', '--config.model.audio.patch_samples=256'),
])
def test_model_variants_run_with_float32_params(overrides):
  config, model = _model(*overrides)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  for name in ('audio_text', 'video_text'):
    task = _task(config, name)
    out = _forward(model, synthetic_batch(task), task)
    for e in out['embeddings'].values():
      assert e.dtype == jnp.float32 and np.all(np.isfinite(e))
  if 'per_modality' in overrides[0]:
    assert {'encoder_image', 'encoder_text'} <= set(vars(model))


def test_drop_token_keeps_the_requested_fraction_of_real_tokens():
  tokens = jnp.arange(2 * 10 * 3, dtype=jnp.float32).reshape(2, 10, 3)
  kept, mask = drop_tokens(tokens, jnp.ones((2, 10), jnp.int32), 0.75, jax.random.key(0))
  assert kept.shape == (2, 2, 3) and mask.shape == (2, 2)
  for b in range(2):   # kept tokens are distinct rows of the input
    rows = {tuple(r) for r in np.asarray(kept[b])}
    assert len(rows) == 2 and rows <= {tuple(r) for r in np.asarray(tokens[b])}


def test_log_mel_matches_numpy():
  rng = np.random.default_rng(0)
  wave = rng.normal(size=(2, 1024)).astype(np.float32)
  got = audio_features.log_mel_spectrogram(wave, sample_rate=8000, window=256, hop=128,
                                           num_mels=16)
  frames = np.stack([wave[:, i * 128:i * 128 + 256] for i in range(7)], axis=1)
  power = np.abs(np.fft.rfft(frames * np.hanning(256), axis=-1)) ** 2
  expect = np.log(power @ audio_features.mel_filterbank(16, 256, 8000) + 1e-6)
  np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4)
  fb = audio_features.mel_filterbank(16, 256, 8000)
  assert fb.shape == (129, 16) and np.all(fb.max(0) > 0.5)


def test_pallas_and_xla_attention_give_the_same_model_output():
  config, model = _model()
  _, pallas = _model('--config.model.attention_impl=pallas')
  nnx.update(pallas, nnx.state(model))
  task = _task(config, 'image_text')
  batch = synthetic_batch(task, batch_size=2)
  for m in ('image', 'text'):
    np.testing.assert_allclose(_embed(pallas, batch, m), _embed(model, batch, m), atol=2e-5)
