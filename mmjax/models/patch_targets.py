"""What masked modeling reconstructs: each token's patch of the input, in the embedding's order.

Image `[b, H, W, 3]` -> `[b, gh*gw, p*p*3]` and video `[b, T, H, W, 3]` -> `[b, gt*gh*gw,
t*p*p*3]` of pixels normalised to [-1, 1] (`normalize_input`); audio -> log-mel patches
`[b, nt*nf, patch_frames*patch_mels]`, each example's spectrogram standardised (zero mean, unit
variance) so its loss is on the pixels' scale (waveform features: raw sample patches). The order
is the modality embedding's, so `embed.proj(patches) + positions` are its tokens.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from mmjax.core import modalities
from mmjax.models import audio_features
from mmjax.models.embeddings import normalize_input


def patchify_image(x: jax.Array, p: int) -> jax.Array:
  """`[b, H, W, c]` -> `[b, (H/p)*(W/p), p*p*c]`, row-major patches."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // p) * (w // p), p * p * c)


def patchify_video(x: jax.Array, t: int, p: int) -> jax.Array:
  """`[b, T, H, W, c]` -> `[b, (T/t)*(H/p)*(W/p), t*p*p*c]` tubelets, time-major."""
  b, tt, h, w, c = x.shape
  x = x.reshape(b, tt // t, t, h // p, p, w // p, p, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(b, (tt // t) * (h // p) * (w // p), t * p * p * c)


def patchify_spectrogram(spec: jax.Array, pt: int, pm: int) -> jax.Array:
  """`[b, frames, mels]` -> `[b, nt*nf, pt*pm]` time-major patches (leftover frames dropped)."""
  b, frames, mels = spec.shape
  nt, nf = frames // pt, mels // pm
  spec = spec[:, :nt * pt].reshape(b, nt, pt, nf, pm).transpose(0, 1, 3, 2, 4)
  return spec.reshape(b, nt * nf, pt * pm)


def standardize(x: jax.Array, axes=(1, 2), eps: float = 1e-6) -> jax.Array:
  mean = x.mean(axes, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(jnp.square(x - mean).mean(axes, keepdims=True) + eps)


@dataclasses.dataclass(frozen=True)
class PatchTarget:
  """What a modality registers for masked modeling (named in core/modalities.py):
  `targets(embed, x)` -> float32 `[b, n, P]` and the token grid; `position_sizes(cfg)`, the
  largest grid along each axis; `patch_dim(cfg)`, P."""
  targets: Callable
  position_sizes: Callable
  patch_dim: Callable


def _image_targets(embed, x):
  return patchify_image(x, embed.patch), embed.grid_shape(x.shape)


def _video_targets(embed, x):
  return patchify_video(x, embed.t, embed.patch), embed.grid_shape(x.shape)


def _audio_targets(embed, x):
  if embed.features == 'waveform':
    n = x.shape[1] // embed.patch
    return x[:, :n * embed.patch].reshape(x.shape[0], n, embed.patch), (n,)
  spec = audio_features.log_mel_spectrogram(x, **embed.mel)
  out = standardize(patchify_spectrogram(spec, embed.patch, embed.patch_mels))
  return out, (spec.shape[1] // embed.patch, spec.shape[2] // embed.patch_mels)


def _audio_sizes(cfg):
  a = cfg.audio
  if a.features == 'waveform':
    return (cfg.max_audio_tokens,)
  return (cfg.max_audio_tokens, a.num_mels // a.patch_mels)


def _audio_dim(cfg):
  a = cfg.audio
  return a.patch_samples if a.features == 'waveform' else a.patch_frames * a.patch_mels


IMAGE = PatchTarget(_image_targets, lambda cfg: (cfg.max_grid, cfg.max_grid),
                    lambda cfg: cfg.patch_size * cfg.patch_size * 3)
VIDEO = PatchTarget(_video_targets, lambda cfg: (cfg.max_frames, cfg.max_grid, cfg.max_grid),
                    lambda cfg: cfg.tubelet_frames * cfg.patch_size * cfg.patch_size * 3)
AUDIO = PatchTarget(_audio_targets, _audio_sizes, _audio_dim)


def registered(modality: str) -> PatchTarget:
  """The patch target `modality` registers in the modality table (core/modalities.py)."""
  ref = modalities.get(modality).patch_target
  if not ref:
    able = [m.name for m in modalities.all_records() if m.patch_target]
    raise ValueError(f'masked modeling reconstructs {", ".join(able)} patches, not '
                     f'{modality!r}.')
  return modalities.load(ref)


def patch_targets(embed, modality: str, x: jax.Array) -> tuple[jax.Array, tuple[int, ...]]:
  """Raw input of `modality` -> float32 targets `[b, n, P]` and the token grid (image `(gh, gw)`,
  video `(gt, gh, gw)`, audio `(nt, nf)` or `(n,)`), for the model's embedding `embed`."""
  target = registered(modality)
  return target.targets(embed, normalize_input(modality, x).astype(jnp.float32))
