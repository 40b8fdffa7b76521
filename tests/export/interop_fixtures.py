"""The parity fixtures of tools/make_interop_fixtures.py (written by open_clip and transformers
themselves) and module-scoped imports of them, shared by the interop tests."""

import os

import numpy as np

from mmjax.export import import_run, published

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fixtures',
                        'interop')
FORMATS = ('open_clip', 'hf_clip', 'hf_siglip')


def fixture(*parts) -> str:
  return os.path.join(FIXTURES, *parts)


def expected(fmt: str) -> dict:
  return dict(np.load(fixture(fmt, 'expected.npz')))


def read(fmt: str) -> published.Imported:
  if fmt == 'open_clip':
    return published.read_open_clip(fixture(fmt, 'open_clip_config.json'),
                                    fixture(fmt, 'open_clip_model.safetensors'))
  if fmt == 'hf_clip':
    return published.read_hf_clip(fixture(fmt))
  return published.read_hf_siglip(fixture(fmt))


def import_to(fmt: str, out: str) -> str:
  spiece = fixture(fmt, 'spiece.model') if fmt == 'hf_siglip' else None
  import_run.import_checkpoint(read(fmt), out, tokenizer_file=spiece, quiet=True)
  return out
