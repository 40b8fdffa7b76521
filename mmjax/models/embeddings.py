"""Modality embeddings: raw inputs -> tokens `[batch, tokens, width]` and a mask `[batch, tokens]`.

Patchifying and input normalisation happen here, on device: pixels arrive as uint8 [0, 255]
and become `x / 127.5 - 1`, audio arrives as int16 and becomes `x / 32768` (floating inputs are
taken as already normalised, to [-1, 1]). Positions are learned and factorized per axis (time,
height, width / frequency), sliced to the input's grid, so one model serves several input
resolutions without retraining.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.core import modalities
from mmjax.models import audio_features
from mmjax.models.layers import Dense, param
from mmjax.config.defaults import setting

_POS_INIT = nnx.initializers.normal(0.02)


def normalize_pixels(x: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1]; floating pixels are returned as they are."""
  if jnp.issubdtype(x.dtype, jnp.floating):
    return x
  return x.astype(jnp.float32) * (2.0 / 255.0) - 1.0


def normalize_audio(x: jax.Array) -> jax.Array:
  """int16 waveform -> float32 `x / 32768`; floating waveforms are returned as they are."""
  if jnp.issubdtype(x.dtype, jnp.floating):
    return x
  return x.astype(jnp.float32) * (1.0 / 32768.0)


def normalize_input(modality: str, x: jax.Array) -> jax.Array:
  """A raw input -> float: uint8 pixels to [-1, 1] (`normalize_pixels`), int16 waveforms by
  1/32768 (`normalize_audio`), by the loader dtype the modality table gives; floating inputs
  (and other modalities') are returned as they are."""
  loader = modalities.get(modality).input.dtype
  if loader == 'int16':
    return normalize_audio(x)
  return normalize_pixels(x) if loader == 'uint8' else x


def _check_grid(name: str, size: int, patch: int, limit: int, limit_key: str) -> int:
  if size % patch:
    raise ValueError(f'{name} size {size} is not a multiple of the patch size {patch}: '
                     f'resize the input or change the patch size.')
  if size // patch > limit:
    raise ValueError(f'{name} gives {size // patch} patches along an axis, more than '
                     f'config.model.{limit_key}={limit}: raise it or use a smaller input.')
  return size // patch


class ImageEmbed(nnx.Module):
  """`[batch, height, width, channels]` -> 2D patches + factorized (row, column) positions."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    p = cfg.patch_size
    self.patch = p
    self.max_grid = cfg.max_grid
    self.proj = Dense(p * p * 3, cfg.width, (None, 'embed'), rngs=rngs, dtype=dtype)
    self.full = setting(cfg, 'model.pos_embed') == 'full'
    if self.full:  # one position per grid cell, row-major (CLIP, SigLIP): [max_grid², width]
      self.pos = param(rngs, _POS_INIT, (cfg.max_grid * cfg.max_grid, cfg.width), (None, 'embed'))
    else:
      self.pos_h = param(rngs, _POS_INIT, (cfg.max_grid, cfg.width), (None, 'embed'))
      self.pos_w = param(rngs, _POS_INIT, (cfg.max_grid, cfg.width), (None, 'embed'))

  def grid_shape(self, shape) -> tuple[int, int]:
    """Patch grid `(h, w)` of an input of `shape` `[batch, height, width, channels]`."""
    return (_check_grid('image height', shape[1], self.patch, self.max_grid, 'max_grid'),
            _check_grid('image width', shape[2], self.patch, self.max_grid, 'max_grid'))

  def __call__(self, x: jax.Array):
    b, hh, ww, c = x.shape
    p = self.patch
    x = normalize_pixels(x)
    gh, gw = self.grid_shape(x.shape)
    x = x.reshape(b, gh, p, gw, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, gh * gw, p * p * c)
    tokens = self.proj(x)
    if self.full:
      pos = self.pos[...].reshape(self.max_grid, self.max_grid, -1)[:gh, :gw]
    else:
      pos = self.pos_h[:gh][:, None] + self.pos_w[:gw][None, :]
    tokens = tokens + pos.reshape(gh * gw, -1).astype(tokens.dtype)
    return tokens, jnp.ones((b, gh * gw), jnp.int32)


class VideoEmbed(nnx.Module):
  """`[batch, frames, height, width, channels]` -> 3D tubelets + (time, row, column) positions."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    t, p = cfg.tubelet_frames, cfg.patch_size
    self.t, self.patch, self.max_grid, self.max_frames = t, p, cfg.max_grid, cfg.max_frames
    self.proj = Dense(t * p * p * 3, cfg.width, (None, 'embed'), rngs=rngs, dtype=dtype)
    self.pos_t = param(rngs, _POS_INIT, (cfg.max_frames, cfg.width), (None, 'embed'))
    self.pos_h = param(rngs, _POS_INIT, (cfg.max_grid, cfg.width), (None, 'embed'))
    self.pos_w = param(rngs, _POS_INIT, (cfg.max_grid, cfg.width), (None, 'embed'))

  def grid_shape(self, shape) -> tuple[int, int, int]:
    """Tubelet grid `(t, h, w)` of an input of `shape` `[batch, frames, height, width, c]`."""
    return (_check_grid('video frames', shape[1], self.t, self.max_frames, 'max_frames'),
            _check_grid('video height', shape[2], self.patch, self.max_grid, 'max_grid'),
            _check_grid('video width', shape[3], self.patch, self.max_grid, 'max_grid'))

  def __call__(self, x: jax.Array):
    b, tt, hh, ww, c = x.shape
    t, p = self.t, self.patch
    x = normalize_pixels(x)
    gt, gh, gw = self.grid_shape(x.shape)
    x = x.reshape(b, gt, t, gh, p, gw, p, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    tokens = self.proj(x.reshape(b, gt * gh * gw, t * p * p * c))
    pos = (self.pos_t[:gt][:, None, None] + self.pos_h[:gh][None, :, None]
           + self.pos_w[:gw][None, None, :])
    tokens = tokens + pos.reshape(gt * gh * gw, -1).astype(tokens.dtype)
    return tokens, jnp.ones((b, gt * gh * gw), jnp.int32)


class AudioEmbed(nnx.Module):
  """`[batch, samples]` -> 1D waveform patches, or (log-mel option) 2D time×frequency patches."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    a = cfg.audio
    self.features = a.features
    self.max_tokens = cfg.max_audio_tokens
    if a.features == 'waveform':
      self.patch = a.patch_samples
      self.proj = Dense(a.patch_samples, cfg.width, (None, 'embed'), rngs=rngs, dtype=dtype)
      self.pos_f = None
    elif a.features == 'log_mel':
      self.patch = a.patch_frames
      self.mel = dict(sample_rate=a.sample_rate, window=a.window, hop=a.hop, num_mels=a.num_mels)
      self.patch_mels = a.patch_mels
      if a.num_mels % a.patch_mels:
        raise ValueError(f'config.model.audio.num_mels={a.num_mels} is not a multiple of '
                         f'patch_mels={a.patch_mels}.')
      self.proj = Dense(a.patch_frames * a.patch_mels, cfg.width, (None, 'embed'),
                        rngs=rngs, dtype=dtype)
      self.pos_f = param(rngs, _POS_INIT, (a.num_mels // a.patch_mels, cfg.width),
                         (None, 'embed'))
    else:
      raise ValueError(f"config.model.audio.features must be 'waveform' or 'log_mel', "
                       f'got {a.features!r}.')
    self.pos_t = param(rngs, _POS_INIT, (cfg.max_audio_tokens, cfg.width), (None, 'embed'))

  def __call__(self, x: jax.Array):
    b = x.shape[0]
    x = normalize_audio(x)
    if self.features == 'waveform':
      n = x.shape[1] // self.patch
      if n == 0 or n > self.max_tokens:
        raise ValueError(f'audio of {x.shape[1]} samples gives {n} patches; need 1 to '
                         f'config.model.max_audio_tokens={self.max_tokens}.')
      tokens = self.proj(x[:, :n * self.patch].reshape(b, n, self.patch))
      return tokens + self.pos_t[:n].astype(tokens.dtype), jnp.ones((b, n), jnp.int32)
    spec = audio_features.log_mel_spectrogram(x, **self.mel)     # [batch, frames, mels]
    nt = spec.shape[1] // self.patch
    nf = spec.shape[2] // self.patch_mels
    if nt == 0 or nt > self.max_tokens:
      raise ValueError(f'audio of {x.shape[1]} samples gives {nt} time patches; need 1 to '
                       f'config.model.max_audio_tokens={self.max_tokens}.')
    spec = spec[:, :nt * self.patch].reshape(b, nt, self.patch, nf, self.patch_mels)
    spec = spec.transpose(0, 1, 3, 2, 4).reshape(b, nt * nf, self.patch * self.patch_mels)
    tokens = self.proj(spec)
    pos = self.pos_t[:nt][:, None] + self.pos_f[None, :]
    tokens = tokens + pos.reshape(nt * nf, -1).astype(tokens.dtype)
    return tokens, jnp.ones((b, nt * nf), jnp.int32)


class TextEmbed(nnx.Module):
  """Token ids `[batch, length]` + padding mask -> token embeddings + positions."""

  def __init__(self, cfg, *, rngs: nnx.Rngs, dtype):
    self.vocab_size, self.max_len = cfg.vocab_size, cfg.max_text_length
    self.token_embedding = param(rngs, _POS_INIT, (cfg.vocab_size, cfg.width), ('vocab', 'embed'))
    self.pos_t = param(rngs, _POS_INIT, (cfg.max_text_length, cfg.width), (None, 'embed'))
    self.dtype = dtype

  def __call__(self, ids: jax.Array, mask: jax.Array | None = None):
    if ids.shape[-1] > self.max_len:
      raise ValueError(f'text of {ids.shape[-1]} tokens exceeds '
                       f'config.model.max_text_length={self.max_len}.')
    tokens = jnp.take(self.token_embedding[...], ids, axis=0).astype(self.dtype)
    tokens = tokens + self.pos_t[:ids.shape[-1]].astype(self.dtype)
    mask = jnp.ones(ids.shape, jnp.int32) if mask is None else mask.astype(jnp.int32)
    return tokens, mask


def embedding_class(modality: str):
  """The nnx embedding class registered for `modality` in the modality table."""
  return modalities.load(modalities.get(modality).embedding)
