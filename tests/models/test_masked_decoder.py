"""Masked modeling's targets and decoder: patches in the embedding's token order, decoder shapes."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax import config as config_lib
from mmjax.models import audio_features
from mmjax.models.embeddings import embedding_class
from mmjax.models.masked_decoder import MaskedDecoder, patch_dim
from mmjax.models.patch_targets import patch_targets, patchify_spectrogram
from mmjax_testing import ROOT


@pytest.fixture(scope='module')
def cfg():
  return config_lib.load_config(os.path.join(ROOT, 'configs/multimae.py')).model


def _inputs():
  rng = np.random.default_rng(0)
  return {'image': rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8),
          'video': rng.integers(0, 256, (2, 8, 32, 32, 3)).astype(np.uint8),
          'audio': rng.normal(scale=6000, size=(2, 4096)).astype(np.int16)}


@pytest.mark.parametrize('modality', ['image', 'video'])
def test_pixel_targets_are_the_embedding_patches(cfg, modality):
  """embed.proj(target patch) + positions gives the embedding's tokens: same order, same pixels."""
  embed = embedding_class(modality)(cfg, rngs=nnx.Rngs(0), dtype=jnp.float32)
  x = _inputs()[modality]
  targets, grid = patch_targets(embed, modality, jnp.asarray(x))
  tokens, _ = embed(jnp.asarray(x))
  assert targets.shape == (2, int(np.prod(grid)), patch_dim(cfg, modality))
  assert float(jnp.abs(targets).max()) <= 1.0      # normalised pixels, not 0..255
  pos = tokens - embed.proj(targets)
  np.testing.assert_allclose(pos[0], pos[1], atol=1e-4)  # what is left is the positions alone
  # An independent patch: image patch (row 1, col 2) by slicing.
  if modality == 'image':
    want = x[0, 8:16, 16:24].astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(targets[0, 1 * 4 + 2], want.reshape(-1), atol=1e-6)


def test_log_mel_targets_follow_the_audio_tokens(cfg):
  embed = embedding_class('audio')(cfg, rngs=nnx.Rngs(0), dtype=jnp.float32)
  x = jnp.asarray(_inputs()['audio'])
  targets, grid = patch_targets(embed, 'audio', x)
  assert grid == (7, 4) and targets.shape == (2, 28, 4 * 8)
  # standardised per example
  np.testing.assert_allclose(targets.mean((1, 2)), 0.0, atol=1e-4)
  np.testing.assert_allclose(targets.std((1, 2)), 1.0, atol=1e-3)
  spec = audio_features.log_mel_spectrogram(x.astype(jnp.float32) / 32768.0, **embed.mel)
  raw = patchify_spectrogram(spec, 4, 8)
  tokens, _ = embed(x)
  pos = tokens - embed.proj(raw)
  np.testing.assert_allclose(pos[0], pos[1], atol=1e-3)
  # patch (time 2, band 1) is frames 8..12 x mels 8..16
  np.testing.assert_allclose(raw[0, 2 * 4 + 1], np.asarray(spec[0, 8:12, 8:16]).reshape(-1),
                             atol=1e-5)


@pytest.mark.parametrize('modality,grid', [('image', (4, 4)), ('video', (2, 4, 4)),
                                           ('audio', (7, 4))])
def test_decoder_shapes(cfg, modality, grid):
  dec = MaskedDecoder(cfg, modality, patch_dim(cfg, modality), rngs=nnx.Rngs(0),
                      dtype=jnp.float32)
  n = int(np.prod(grid))
  states = jax.random.normal(jax.random.key(0), (3, n, cfg.width))
  visible = (jnp.arange(n)[None] < jnp.array([[0], [5], [n]])).astype(jnp.int32)
  ctx = jax.random.normal(jax.random.key(1), (3, 6, cfg.width))
  out = dec(states, visible, grid, ctx, jnp.ones((3, 6), jnp.int32))
  assert out.shape == (3, n, patch_dim(cfg, modality)) and out.dtype == jnp.float32
  # The masked queries do not read the states under them.
  out2 = dec(states.at[0].set(0.0), visible, grid, ctx, jnp.ones((3, 6), jnp.int32))
  np.testing.assert_allclose(out2[0], out[0], atol=1e-5)
  with pytest.raises(ValueError, match='positions'):
    dec(states, visible, grid + (1,), ctx, jnp.ones((3, 6), jnp.int32))
