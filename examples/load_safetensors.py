"""Embeddings from an mmjax export with numpy and jax alone: no mmjax import, no safetensors package.

  python examples/load_safetensors.py EXPORT_DIR [--inputs=inputs.npz] [--out=embeddings.npz]

EXPORT_DIR is what `mmjax-export` writes: `model.safetensors`, `config.json` (the run's config;
`model` is the architecture) and `export_report.json` (the input sizes). `--inputs` is an .npz
with any of `image [n, height, width, 3]` and `video [n, frames, height, width, 3]` (pixels in
[-1, 1]), `audio [n, samples]` (waveforms: float, or int16; waveform-patch and log-mel models
alike), `text [n, length]` token ids with
`text_mask [n, length]` (1 = real token; ids from the exported `tokenizer.model`). Without it,
random inputs of the trained sizes are used. Writes one L2-normalised `[n, embed_dim]` array
per modality to `--out`, and prints their shapes.

Covers the dense encoder (shared or per-modality, mean or CLS pooling, QK-norm), computed in
float32, and both audio settings (waveform patches, log-mel time x frequency patches); MoE,
Mixture-of-Transformers and routed attention are refused by name.
"""

import argparse
import json
import os
import struct
import sys

import jax
import jax.numpy as jnp
import numpy as np

_DTYPES = {'F32': np.float32, 'F16': np.float16, 'BF16': jnp.bfloat16, 'I32': np.int32,
           'I64': np.int64}


def read_safetensors(path: str) -> dict:
  """`{name: float32 numpy array}` of a safetensors file: an 8-byte little-endian header size,
  a JSON header of {name: {dtype, shape, data_offsets}}, then the raw tensor bytes."""
  with open(path, 'rb') as f:
    (size,) = struct.unpack('<Q', f.read(8))
    header = json.loads(f.read(size))
    data = f.read()
  out = {}
  for name, info in header.items():
    if name == '__metadata__':
      continue
    begin, end = info['data_offsets']
    array = np.frombuffer(data[begin:end], dtype=_DTYPES[info['dtype']]).reshape(info['shape'])
    out[name] = np.asarray(array, np.float32) if info['dtype'] != 'I32' else array
  return out


def layer_norm(x, p, name, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = jnp.square(x - mean).mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps) * p[f'{name}.scale'] + p[f'{name}.bias']


def dense(x, p, name):
  return x @ p[f'{name}.kernel'] + p[f'{name}.bias']


def attention(x, mask, p, name, qk_norm: bool):
  """Multi-head self-attention `[n, length, width]`; a token attends to tokens of its mask value."""
  qkv = jnp.einsum('bld,dthk->blthk', x, p[f'{name}.qkv.kernel']) + p[f'{name}.qkv.bias']
  q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]                # [n, length, heads, kv]
  if qk_norm:
    q, k = layer_norm(q, p, f'{name}.q_norm'), layer_norm(k, p, f'{name}.k_norm')
  s = jnp.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
  allowed = mask[:, None, :, None] == mask[:, None, None, :]
  s = jnp.where(allowed, s, -1e30)
  w = jnp.where(allowed, jnp.exp(s - s.max(-1, keepdims=True)), 0.0)
  w = w / w.sum(-1, keepdims=True)
  o = jnp.einsum('bhqk,bkhd->bqhd', w, v)
  return jnp.einsum('blhk,hkd->bld', o, p[f'{name}.out.kernel']) + p[f'{name}.out.bias']


def encoder(x, mask, p, prefix: str, model: dict):
  """Pre-LayerNorm blocks: x + Attn(LN(x)), x + MLP(LN(x)); then a final LayerNorm."""
  for i in range(model['num_layers']):
    b = f'{prefix}.block_{i}'
    x = x + attention(layer_norm(x, p, f'{b}.norm1'), mask, p, f'{b}.attn', model['qk_norm'])
    h = jax.nn.gelu(dense(layer_norm(x, p, f'{b}.norm2'), p, f'{b}.mlp.wi'))
    x = x + dense(h, p, f'{b}.mlp.wo')
  return layer_norm(x, p, f'{prefix}.norm')


def audio_float(x):
  """int16 waveforms -> float32 `x / 32768`; float waveforms as they are."""
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32) / 32768.0


def mel_filters(num_mels: int, fft_size: int, sample_rate: int, low_hz: float = 20.0):
  """Triangular HTK mel filters `[fft_size // 2 + 1, num_mels]` from low_hz to Nyquist."""
  to_mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)
  edges = 700.0 * (10.0 ** (np.linspace(to_mel(low_hz), to_mel(sample_rate / 2), num_mels + 2)
                           / 2595.0) - 1.0)
  bins = np.linspace(0, sample_rate / 2, fft_size // 2 + 1)[:, None]
  lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
  rising, falling = (bins - lower) / (center - lower), (upper - bins) / (upper - center)
  return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def log_mel(x, sample_rate: int, window: int, hop: int, num_mels: int):
  """`[n, samples]` -> `[n, frames, num_mels]`: Hann-windowed frames (1 + (samples - window) //
  hop of them), power spectrum, HTK mel filters, log(mel + 1e-6); float32."""
  frames = 1 + (x.shape[-1] - window) // hop
  idx = np.arange(window)[None, :] + hop * np.arange(frames)[:, None]
  framed = x.astype(jnp.float32)[..., idx] * np.hanning(window).astype(np.float32)
  power = jnp.square(jnp.abs(jnp.fft.rfft(framed, axis=-1)))
  return jnp.log(power @ mel_filters(num_mels, window, sample_rate) + 1e-6)


def tokens(modality: str, x, mask, p, model: dict):
  """Raw input -> `[n, tokens, width]` embeddings with positions, and the token mask."""
  e = f'embed_{modality}'
  n = x.shape[0]
  if modality == 'image':
    s = model['patch_size']
    gh, gw = x.shape[1] // s, x.shape[2] // s
    patches = x.reshape(n, gh, s, gw, s, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, gh * gw, -1)
    pos = p[f'{e}.pos_h'][:gh][:, None] + p[f'{e}.pos_w'][:gw][None, :]
    t = dense(patches, p, f'{e}.proj') + pos.reshape(gh * gw, -1)
  elif modality == 'video':
    s, f = model['patch_size'], model['tubelet_frames']
    gt, gh, gw = x.shape[1] // f, x.shape[2] // s, x.shape[3] // s
    patches = x.reshape(n, gt, f, gh, s, gw, s, 3).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    patches = patches.reshape(n, gt * gh * gw, -1)
    pos = (p[f'{e}.pos_t'][:gt][:, None, None] + p[f'{e}.pos_h'][:gh][None, :, None]
           + p[f'{e}.pos_w'][:gw][None, None, :])
    t = dense(patches, p, f'{e}.proj') + pos.reshape(gt * gh * gw, -1)
  elif modality == 'audio' and model['audio']['features'] == 'log_mel':
    a = model['audio']
    spec = log_mel(audio_float(x), a['sample_rate'], a['window'], a['hop'], a['num_mels'])
    ft, fm = a['patch_frames'], a['patch_mels']
    nt, nf = spec.shape[1] // ft, spec.shape[2] // fm
    patches = spec[:, :nt * ft].reshape(n, nt, ft, nf, fm).transpose(0, 1, 3, 2, 4)
    pos = p[f'{e}.pos_t'][:nt][:, None] + p[f'{e}.pos_f'][None, :]
    t = dense(patches.reshape(n, nt * nf, ft * fm), p, f'{e}.proj') + pos.reshape(nt * nf, -1)
  elif modality == 'audio':
    size = model['audio']['patch_samples']
    x = audio_float(x)
    k = x.shape[1] // size
    t = dense(x[:, :k * size].reshape(n, k, size), p, f'{e}.proj') + p[f'{e}.pos_t'][:k]
  else:
    t = p[f'{e}.token_embedding'][x] + p[f'{e}.pos_t'][:x.shape[1]]
    return t, (jnp.ones(x.shape, jnp.int32) if mask is None else jnp.asarray(mask, jnp.int32))
  return t, jnp.ones(t.shape[:2], jnp.int32)


def embed(modality: str, x, mask, p, model: dict):
  """`[n, embed_dim]` L2-normalised embeddings of one modality."""
  t, m = tokens(modality, jnp.asarray(x), mask, p, model)
  if model['pooling'] == 'cls':
    cls = jnp.broadcast_to(p[f'cls_{modality}'][None], (t.shape[0], 1, t.shape[-1]))
    t = jnp.concatenate([cls, t], axis=1)
    m = jnp.concatenate([jnp.ones((m.shape[0], 1), m.dtype), m], axis=1)
  prefix = 'encoder' if 'encoder.norm.scale' in p else f'encoder_{modality}'
  h = encoder(t, m, p, prefix, model)
  if model['pooling'] == 'cls':
    pooled = h[:, 0]
  else:
    w = m.astype(jnp.float32)[..., None]
    pooled = (h * w).sum(1) / jnp.maximum(w.sum(1), 1.0)
  z = dense(pooled, p, f'proj_{modality}')
  return z * jax.lax.rsqrt(jnp.maximum((z * z).sum(-1, keepdims=True), 1e-12))


def check_supported(model: dict) -> None:
  moe = model.get('moe', {})
  problems = []
  if moe.get('num_experts'):
    problems.append('MoE layers')
  if moe.get('mixture_of_transformers'):
    problems.append('Mixture-of-Transformers')
  if model.get('routed_attention', {}).get('layers'):
    problems.append('routed attention')
  if problems:
    sys.exit(f'error: this example covers the dense encoder; the model uses '
             f'{", ".join(problems)}: load it with mmjax (mmjax.export.load).')


def random_inputs(modalities, sizes: dict, model: dict, n: int = 4) -> dict:
  rng = np.random.default_rng(0)
  out = {}
  if 'image' in modalities:
    s = sizes['image_size']
    out['image'] = rng.uniform(-1, 1, (n, s, s, 3)).astype(np.float32)
  if 'video' in modalities:
    s = sizes['image_size']
    out['video'] = rng.uniform(-1, 1, (n, sizes['num_frames'], s, s, 3)).astype(np.float32)
  if 'audio' in modalities:   # waveforms, whatever features the model computes from them
    out['audio'] = rng.normal(size=(n, sizes['audio_samples'])).astype(np.float32)
  if 'text' in modalities:
    length = sizes['text_length']
    out['text'] = rng.integers(1, model['vocab_size'], (n, length)).astype(np.int32)
    out['text_mask'] = (np.arange(length) < rng.integers(2, length + 1, (n, 1))).astype(np.int32)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('export_dir')
  parser.add_argument('--inputs', default=None, help='.npz of inputs (default: random)')
  parser.add_argument('--out', default=None, help='.npz to write the embeddings to')
  args = parser.parse_args(argv)
  with open(os.path.join(args.export_dir, 'config.json')) as f:
    model = json.load(f)['model']
  with open(os.path.join(args.export_dir, 'export_report.json')) as f:
    report = json.load(f)
  check_supported(model)
  params = {k: jnp.asarray(v) for k, v in
            read_safetensors(os.path.join(args.export_dir, 'model.safetensors')).items()}
  inputs = (dict(np.load(args.inputs)) if args.inputs else
            random_inputs(report['modalities'], report['input_sizes'], model))
  embeddings = {}
  for modality in ('image', 'video', 'audio', 'text'):
    if modality not in inputs:
      continue
    e = embed(modality, inputs[modality], inputs.get('text_mask'), params, model)
    embeddings[modality] = np.asarray(e)
    print(f'{modality:6s} {tuple(inputs[modality].shape)} -> {embeddings[modality].shape}')
  if args.out:
    np.savez(args.out, **embeddings)
    print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
