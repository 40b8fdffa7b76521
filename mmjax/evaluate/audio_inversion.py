"""Log-mel spectrogram -> waveform for listening to generated audio: the mel power is mapped
back to linear frequencies by the filterbank's pseudo-inverse (clipped at 0), and Griffin-Lim
iterations find a phase for that magnitude (Hann window, the front end's window and hop)."""

from __future__ import annotations

import numpy as np

from mmjax.models.audio_features import mel_filterbank


def _stft(x: np.ndarray, window: int, hop: int, frames: int) -> np.ndarray:
  idx = np.arange(window)[None] + hop * np.arange(frames)[:, None]
  return np.fft.rfft(x[idx] * np.hanning(window), axis=-1)


def _istft(spec: np.ndarray, window: int, hop: int, samples: int) -> np.ndarray:
  w = np.hanning(window)
  out, norm = np.zeros(samples), np.zeros(samples)
  for t, frame in enumerate(np.fft.irfft(spec, n=window, axis=-1)):
    out[t * hop:t * hop + window] += frame * w
    norm[t * hop:t * hop + window] += w * w
  return out / np.maximum(norm, 1e-8)


def log_mel_to_waveform(log_mel: np.ndarray, *, sample_rate: int, window: int, hop: int,
                        samples: int, iterations: int = 32, seed: int = 0) -> np.ndarray:
  """`log_mel [frames, mels]` (as audio_features computes) -> float32 waveform `[samples]`,
  peak-normalised to 0.9."""
  frames, mels = log_mel.shape
  fb = mel_filterbank(mels, window, sample_rate)                   # [bins, mels]
  power = np.maximum(np.exp(log_mel) - 1e-6, 0.0) @ np.linalg.pinv(fb)
  mag = np.sqrt(np.maximum(power, 0.0))                            # [frames, bins]
  phase = np.exp(2j * np.pi * np.random.default_rng(seed).random(mag.shape))
  x = _istft(mag * phase, window, hop, samples)
  for _ in range(iterations):
    spec = _stft(x, window, hop, frames)
    x = _istft(mag * np.exp(1j * np.angle(spec)), window, hop, samples)
  return (0.9 * x / max(np.abs(x).max(), 1e-6)).astype(np.float32)
