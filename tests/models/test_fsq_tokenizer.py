"""FSQ and the 4M tokenizer: the index <-> code mapping is a bijection, quantisation reaches
every level and is idempotent on its codes, the exported tokenizer gives back the same tokens,
and `python -m tools.train_tokenizer` trains one with its report (and refuses bad input)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models import discrete_tokenizer as dt
from mmjax.models import fsq, tokenizer_files
from tools.train_tokenizer import main as train_tokenizer_main
from fourm_testing import write_tiny_tokenizers

LEVELS = (8, 5, 3)


def test_indices_and_codes_are_a_bijection():
  idx = jnp.arange(fsq.vocab_size(LEVELS))
  codes = fsq.indices_to_codes(idx, LEVELS)
  # Every code is a distinct tuple of integer levels inside each channel's range.
  assert len({tuple(c) for c in np.asarray(codes)}) == 8 * 5 * 3
  half = np.array(LEVELS) // 2
  assert np.all(np.asarray(codes) >= -half) and np.all(np.asarray(codes) <= np.array(LEVELS) - 1 - half)
  np.testing.assert_array_equal(fsq.codes_to_indices(codes, LEVELS), idx)
  # Mixed radix by hand: index = d0 + 8 * d1 + 40 * d2 with digits d = code + half.
  d = np.asarray(codes) + half
  np.testing.assert_array_equal(d[:, 0] + 8 * d[:, 1] + 40 * d[:, 2], np.asarray(idx))


def test_quantize_reaches_every_level_and_is_idempotent():
  z = jnp.linspace(-6, 6, 2001)[:, None] * jnp.ones((1, 3))
  q = np.asarray(fsq.quantize(z, LEVELS))
  for i, n in enumerate(LEVELS):
    assert len(np.unique(q[:, i])) == n
  np.testing.assert_array_equal(q, np.round(q))
  # Codes -> indices -> codes -> indices gives the same indices.
  ids = fsq.codes_to_indices(q, LEVELS)
  np.testing.assert_array_equal(fsq.codes_to_indices(fsq.indices_to_codes(ids, LEVELS), LEVELS), ids)
  # Straight-through: the gradient is that of the bounding tanh, not zero.
  g = jax.grad(lambda v: fsq.quantize(v, LEVELS).sum())(jnp.zeros((1, 3)))
  assert np.all(np.asarray(g) > 0.5)


def test_exported_tokenizer_round_trips_its_tokens(tmp_path):
  paths = write_tiny_tokenizers(tmp_path)
  params, spec = tokenizer_files.load(paths['image'])
  x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
  ids = dt.tokenize(params, spec, x)
  assert ids.shape == (3, 16) and int(ids.max()) < dt.vocab_size(spec)
  # The decoder's input for these tokens is exactly the encoder's quantised output.
  q = fsq.quantize(dt.encode_latent(params, spec, dt.preprocess(spec, x)), spec['levels'])
  np.testing.assert_array_equal(fsq.indices_to_codes(ids.reshape(3, 4, 4), spec['levels']), q)
  assert dt.detokenize(params, spec, ids).shape == (3, 32, 32, 3)
  audio = np.random.default_rng(1).normal(0, 3000, (2, 4096)).astype(np.int16)
  a_params, a_spec = tokenizer_files.load(paths['audio'])
  assert dt.tokenize(a_params, a_spec, audio).shape == (2, 16)
  assert dt.detokenize(a_params, a_spec, dt.tokenize(a_params, a_spec, audio)).shape == (2, 31, 32)


def test_train_tokenizer_cli_writes_an_export_with_its_report(tmp_path, capsys):
  out = tmp_path / 'tok'
  rc = train_tokenizer_main(['--modality=image', '--dataset=mmjax_digits', f'--output={out}',
                             '--steps=3', '--channels=4,4,4', '--levels=4,4'])
  assert rc == 0
  report = json.loads((out / 'export_report.json').read_text())
  assert report['kind'] == 'fourm_tokenizer' and report['vocab_size'] == 16
  m = report['metrics']
  assert 0 < m['test_codebook_usage'] <= 1 and 1 <= m['test_perplexity'] <= 16
  assert m['test_mse'] > 0 and 0 <= m['test_round_trip'] <= 1 and 'test_psnr_db' in m
  assert sorted(os.listdir(out)) == ['README.md', 'config.json', 'export_report.json',
                                     'model.safetensors']
  capsys.readouterr()
  rc = train_tokenizer_main(['--modality=video', '--dataset=mmjax_digits',
                             f'--output={tmp_path / "v"}'])
  assert rc == 2 and 'video is not supported' in capsys.readouterr().err
  assert not (tmp_path / 'v').exists()
