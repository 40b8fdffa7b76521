"""Log-mel spectrogram of raw waveforms, computed on device.

`[batch, samples]` -> `[batch, frames, mels]`, frames = 1 + (samples - window) // hop. Hann
window, power spectrum, HTK mel filterbank, log(mel + 1e-6). All float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _hz_to_mel(hz):
  return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel_to_hz(mel):
  return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(num_mels: int, fft_size: int, sample_rate: int,
                   low_hz: float = 20.0, high_hz: float | None = None) -> np.ndarray:
  """Triangular HTK mel filters `[fft_size // 2 + 1, num_mels]`."""
  high_hz = high_hz or sample_rate / 2
  bins = np.linspace(0, sample_rate / 2, fft_size // 2 + 1)
  edges = _mel_to_hz(np.linspace(_hz_to_mel(low_hz), _hz_to_mel(high_hz), num_mels + 2))
  lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
  up = (bins[:, None] - lower[None]) / (center - lower)[None]
  down = (upper[None] - bins[:, None]) / (upper - center)[None]
  return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def log_mel_spectrogram(waveform: jax.Array, *, sample_rate: int, window: int, hop: int,
                        num_mels: int) -> jax.Array:
  """`[batch, samples]` -> `[batch, frames, num_mels]` log-mel energies."""
  samples = waveform.shape[-1]
  if samples < window:
    raise ValueError(f'audio of {samples} samples is shorter than the {window}-sample window.')
  frames = 1 + (samples - window) // hop
  idx = np.arange(window)[None, :] + hop * np.arange(frames)[:, None]
  x = waveform.astype(jnp.float32)[..., idx]                     # [batch, frames, window]
  x = x * jnp.asarray(np.hanning(window).astype(np.float32))
  power = jnp.square(jnp.abs(jnp.fft.rfft(x, axis=-1)))          # [batch, frames, window//2+1]
  mel = power @ jnp.asarray(mel_filterbank(num_mels, window, sample_rate))
  return jnp.log(mel + 1e-6)
