"""`stablehlo/signature.json`: what each serialized function takes and returns, and how to
prepare its inputs, so a consumer needs neither mmjax nor its config.

Shapes are lists whose batch entry is the string "b" (any size >= 1). Preprocessing is the
evaluation's: the functions take already-prepared arrays (pixels in [-1, 1], raw waveform,
token ids), and everything after that (patchify, log-mel, encoder, projection) is inside them.
"""

from __future__ import annotations

import jax

from mmjax.core import modalities
from mmjax.core.exports import layout
from mmjax.export import inputs as inputs_lib
from mmjax.config.defaults import setting

# Each input array's description and value range, from the modality table (core/modalities.py).
DESCRIPTIONS = {a.name: a.description for m in modalities.all_records() for a in m.arrays}
RANGES = {a.name: list(a.range) if a.range else None
          for m in modalities.all_records() for a in m.arrays}


def _inputs(modality: str, sizes: dict, vocab_size: int) -> list[dict]:
  out = []
  for name, (shape, dtype) in inputs_lib.input_specs(modality, sizes, 'b').items():
    rng = [0, vocab_size - 1] if name == 'text' else RANGES[name]
    out.append({'name': name, 'shape': list(shape), 'dtype': str(dtype), 'range': rng,
                'description': DESCRIPTIONS[name]})
  return out


def preprocessing(config, sizes: dict, tokenizer: dict | None) -> dict:
  """How the evaluation prepares each modality (the functions expect exactly this)."""
  m = config.model
  stride = int(setting(setting(config, 'data'), 'data.frame_stride'))
  out = {
      'image': {'size': sizes.get('image_size'), 'normalisation': 'x / 127.5 - 1 (uint8 RGB)',
                'crop': 'central square, antialiased bilinear resize to size x size; gray '
                        'repeated to 3 channels, alpha dropped'},
      'video': {'frames': sizes.get('num_frames'), 'frame_stride': stride,
                'size': sizes.get('image_size'),
                'clip': 'the central window of frames; each frame prepared as an image'},
      'audio': {'samples': sizes.get('audio_samples'), 'sample_rate': int(m.audio.sample_rate),
                'window': 'the central window of samples, zero-padded past the end; mono',
                'features': f'{m.audio.features} computed inside the function'},
      'text': {'length': sizes.get('text_length'), 'tokenizer_file': None,
               'lowercase': bool(setting(setting(config, 'text'), 'text.lowercase')),
               'pad_id': 0, 'unk_id': 1, 'bos_eos': 'none', 'truncation': 'keep the first '
               'length tokens'},
  }
  for record in modalities.all_records():  # the table's own description of the others
    if record.name not in out:
      out[record.name] = {k: (sizes.get(v) if v in dict(modalities.resolution_fields()) else v)
                          for k, v in record.preprocessing}
  if tokenizer is not None:
    out['text'].update({'tokenizer_file': layout.TOKENIZER, 'vocab_size': tokenizer['vocab_size']})
  return out


def build(config, modalities, sizes: dict, step: int, dtype: str, platforms,
          tokenizer: dict | None) -> dict:
  """The signature dict written to `stablehlo/signature.json`."""
  embed_dim = int(config.model.embed_dim)
  prep = preprocessing(config, sizes, tokenizer)
  functions = {}
  for m in modalities:
    functions[m] = {
        'file': layout.stablehlo_file(m),
        'inputs': _inputs(m, sizes, int(config.model.vocab_size)),
        'outputs': [{'name': 'embedding', 'shape': ['b', embed_dim], 'dtype': 'float32',
                     'description': 'L2-normalised embedding in the common space; compare '
                                    'modalities by dot product'}],
        'preprocessing': prep[m]}
  return {
      'format': 'jax.export (StableHLO), serialized with Exported.serialize()',
      'load': "jax.export.deserialize(bytearray(open(file, 'rb').read())).call(*inputs)",
      'params': f'baked into each function as {dtype} constants'
                + (' (upcast to float32 inside)' if dtype != 'float32' else ''),
      'jax_version': jax.__version__, 'platforms': list(platforms), 'batch_dim': 'b',
      'step': int(step), 'dtype': dtype, 'embed_dim': embed_dim,
      'tokenizer_file': f'../{layout.TOKENIZER}' if tokenizer is not None else None,
      'functions': functions,
  }
