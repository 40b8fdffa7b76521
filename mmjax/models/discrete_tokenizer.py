"""4M's per-modality discrete tokenizer: a small convolutional FSQ autoencoder (pure functions).

  image  uint8 `[b, H, W, 3]` -> pixels in [-1, 1]                  -> tokens `[b, H/2^k, W/2^k]`
  audio  int16 `[b, samples]` -> standardised log-mel `[b, T, M, 1]` -> tokens `[b, T/2^k, M/2^k]`

`k = len(spec['channels'])` stride-2 3x3 convolutions (GELU) then a 3x3 convolution to
`len(levels)` channels, quantised by FSQ (`fsq.py`); the decoder mirrors it with nearest-neighbour
2x upsampling. `spec` is a JSON-able dict (it is the export's config); params a nested dict.
Frozen inside the 4M train step, so the same code runs there, in training and in generation.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.models import audio_features, fsq
from mmjax.models.embeddings import normalize_audio, normalize_pixels

MODALITIES = ('image', 'audio')


def make_spec(modality: str, *, levels=(8, 5, 5, 5), channels=(32, 64, 64), image_size=32,
              audio=None, audio_samples=0) -> dict:
  """The tokenizer's description; `audio` is `config.model.audio`-like (sample_rate, window,
  hop, num_mels) for audio tokenizers."""
  if modality not in MODALITIES:
    raise ValueError(f'a discrete tokenizer is for {MODALITIES}, not {modality!r}.')
  spec = dict(modality=modality, levels=[int(v) for v in levels],
              channels=[int(c) for c in channels], mean=0.0, std=1.0)
  f = 2 ** len(spec['channels'])
  if modality == 'image':
    if image_size % f:
      raise ValueError(f'image_size {image_size} is not a multiple of {f} (2^{len(channels)}).')
    spec.update(image_size=int(image_size), in_channels=3, grid=[image_size // f] * 2)
  else:
    mel = dict(sample_rate=int(audio['sample_rate']), window=int(audio['window']),
               hop=int(audio['hop']), num_mels=int(audio['num_mels']))
    frames = 1 + (audio_samples - mel['window']) // mel['hop']
    if mel['num_mels'] % f:
      raise ValueError(f'num_mels {mel["num_mels"]} is not a multiple of {f}.')
    spec.update(mel, audio_samples=int(audio_samples), frames=frames, in_channels=1,
                grid=[math.ceil(frames / f), mel['num_mels'] // f])
  return spec


def vocab_size(spec) -> int:
  return fsq.vocab_size(spec['levels'])


def num_tokens(spec) -> int:
  return int(np.prod(spec['grid']))


def _conv_init(key, k, cin, cout):
  w = jax.random.normal(key, (k, k, cin, cout), jnp.float32) * math.sqrt(2.0 / (k * k * cin))
  return {'kernel': w, 'bias': jnp.zeros((cout,), jnp.float32)}


def init_params(key, spec) -> dict:
  ch, d, cin = spec['channels'], len(spec['levels']), spec['in_channels']
  keys = iter(jax.random.split(key, 2 * len(ch) + 4))
  p, prev = {}, cin
  for i, c in enumerate(ch):
    p[f'enc_{i}'] = _conv_init(next(keys), 3, prev, c)
    prev = c
  p['enc_out'] = _conv_init(next(keys), 3, prev, d)
  p['dec_in'] = _conv_init(next(keys), 3, d, ch[-1])
  prev = ch[-1]
  for i, c in enumerate(reversed(ch)):
    p[f'dec_{i}'] = _conv_init(next(keys), 3, prev, c)
    prev = c
  p['dec_out'] = _conv_init(next(keys), 3, prev, cin)
  return p


def _conv(p, x, stride=1):
  y = jax.lax.conv_general_dilated(x, p['kernel'], (stride, stride), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y + p['bias']


def preprocess(spec, x: jax.Array) -> jax.Array:
  """Raw input -> the autoencoder's float32 input `[b, h, w, c]`."""
  if spec['modality'] == 'image':
    return normalize_pixels(x).astype(jnp.float32)
  mel = audio_features.log_mel_spectrogram(
      normalize_audio(x), sample_rate=spec['sample_rate'], window=spec['window'],
      hop=spec['hop'], num_mels=spec['num_mels'])                     # [b, frames, mels]
  f = 2 ** len(spec['channels'])
  pad = spec['grid'][0] * f - mel.shape[1]
  mel = jnp.pad(mel, ((0, 0), (0, pad), (0, 0)), mode='edge')
  return ((mel - spec['mean']) / spec['std'])[..., None]


def postprocess(spec, y: jax.Array):
  """The decoder's output -> uint8 pixels `[b, H, W, 3]` or log-mel `[b, frames, mels]`."""
  if spec['modality'] == 'image':
    return jnp.round((jnp.clip(y, -1, 1) + 1) * 127.5).astype(jnp.uint8)
  return y[:, :spec['frames'], :, 0] * spec['std'] + spec['mean']


def encode_latent(params, spec, x: jax.Array) -> jax.Array:
  """Autoencoder input `[b, h, w, c]` -> continuous latents `[b, gh, gw, len(levels)]`."""
  for i in range(len(spec['channels'])):
    x = jax.nn.gelu(_conv(params[f'enc_{i}'], x, 2))
  return _conv(params['enc_out'], x)


def decode_codes(params, spec, q: jax.Array) -> jax.Array:
  """FSQ codes `[b, gh, gw, d]` -> reconstruction in the autoencoder's input space."""
  x = jax.nn.gelu(_conv(params['dec_in'], fsq.scale(q, spec['levels'])))
  for i in range(len(spec['channels'])):
    b, h, w, c = x.shape
    x = jax.image.resize(x, (b, 2 * h, 2 * w, c), 'nearest')
    x = jax.nn.gelu(_conv(params[f'dec_{i}'], x))
  return _conv(params['dec_out'], x)


def reconstruct(params, spec, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Autoencoder input -> (reconstruction, token ids `[b, gh, gw]`); straight-through FSQ."""
  q = fsq.quantize(encode_latent(params, spec, x), spec['levels'])
  return decode_codes(params, spec, q), fsq.codes_to_indices(q, spec['levels'])


def tokenize(params, spec, raw: jax.Array) -> jax.Array:
  """Raw input (uint8 pixels / int16 audio) -> int32 token ids `[b, num_tokens]` (row-major grid).
  Parameters are held behind `stop_gradient`: the tokenizer is frozen."""
  params = jax.lax.stop_gradient(params)
  q = fsq.quantize(encode_latent(params, spec, preprocess(spec, raw)), spec['levels'])
  ids = fsq.codes_to_indices(q, spec['levels'])
  return ids.reshape(ids.shape[0], -1)


def detokenize(params, spec, ids: jax.Array):
  """int token ids `[b, num_tokens]` -> decoded uint8 pixels or log-mel (see `postprocess`)."""
  codes = fsq.indices_to_codes(ids.reshape(ids.shape[0], *spec['grid']), spec['levels'])
  return postprocess(spec, decode_codes(params, spec, codes))
