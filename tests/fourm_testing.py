"""Tiny 4M tokenizers for tests: untrained FSQ autoencoders (one 4-channel conv per 2x
downsampling) written in the export layout, and configs/fourm.py shrunk to one encoder layer and
one decoder layer that names them."""

import os

import jax

from mmjax import config as config_lib
from mmjax.models import discrete_tokenizer as dt
from mmjax.models import tokenizer_files
from mmjax_testing import ROOT

AUDIO = dict(sample_rate=8000, window=256, hop=128, num_mels=32)


def write_tiny_tokenizers(root) -> dict[str, str]:
  """`{modality: dir}` of untrained image (32 px) and audio (4096 samples) tokenizers with FSQ
  levels (4, 4): 16 codes and 16 tokens per example each."""
  out = {}
  for i, m in enumerate(('image', 'audio')):
    spec = dt.make_spec(m, levels=(4, 4), channels=(4, 4, 4), image_size=32, audio=AUDIO,
                        audio_samples=4096)
    if m == 'audio':
      spec = dict(spec, mean=-6.0, std=4.0)
    path = os.path.join(str(root), f'tok_{m}')
    if not tokenizer_files.is_tokenizer(path):
      tokenizer_files.save(path, jax.device_get(dt.init_params(jax.random.key(i), spec)), spec,
                           {'steps': 0, 'metrics': {}})
    out[m] = path
  return out


def tiny_args(tokenizers: dict[str, str]) -> list[str]:
  return ['--config.model.num_layers=1', '--config.model.fourm.decoder_layers=1',
          *[f'--config.model.fourm.tokenizers.{m}={p}' for m, p in tokenizers.items()]]


def fourm_config(tokenizers, *overrides, arg=''):
  return config_lib.load_config(os.path.join(ROOT, 'configs/fourm.py') + arg,
                                [*tiny_args(tokenizers), *overrides])
