"""Padding reaches the flash kernel as lengths through the model: the block pairs it visits
are those real tokens need (counted inside the kernel call, through `Model.embed`), and the
options that cannot work are refused before compiling, through the CLI (exit 2)."""

import importlib
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax.models.model import build_model
from mmjax.train import __main__ as train_cli
from mmjax_testing import ROOT, demo_config

flash_lib = importlib.import_module('mmjax.kernels.flash_attention')


def test_flash_visits_only_real_block_pairs_through_the_model(monkeypatch):
  """256 text tokens in CPU blocks of 128 (2 x 2 pairs); real lengths 100 and 256 need 1 and
  4 pairs. Padding passed only as segment ids made every pair non-empty (4 and 4)."""
  visited = []
  inner = flash_lib.block_sparse_attention

  def counting(t, q, k, v, q_seg, k_seg, pairs):
    jax.debug.callback(lambda n: visited.append(np.asarray(n)), pairs.start_q[:, -1])
    return inner(t, q, k, v, q_seg, k_seg, pairs)

  monkeypatch.setattr(flash_lib, 'block_sparse_attention', counting)
  config = demo_config('--config.model.num_layers=1', '--config.model.attention_impl=pallas',
                       '--config.model.max_text_length=256')
  model = build_model(config, nnx.Rngs(params=0))
  ids = np.random.default_rng(0).integers(1, 100, (2, 256)).astype(np.int32)
  mask = (np.arange(256)[None] < np.array([[100], [256]])).astype(np.int32)
  out = jax.jit(lambda ids, mask: model.embed({'text': ids, 'text_mask': mask}, 'text'))(
      ids, mask)
  jax.block_until_ready(out)
  assert len(visited) == 1   # one layer, one forward call
  np.testing.assert_array_equal(visited[0], [1, 4])


def _train(workdir, *args):
  return train_cli.main([f'--config={os.path.join(ROOT, "configs", "demo.py")}',
                         f'--workdir={workdir}', *args])


ROUTED = '--config.model.routed_attention.layers=(0,)'
MOT = '--config.model.moe.mixture_of_transformers=True'
REFUSED = {
    'droptoken with routed layers': (
        (ROUTED, '--config.tasks.video_text.drop_token=0.5'),
        r'config\.tasks\.video_text\.drop_token drops tokens out of the routed-attention .*'),
    'mot with routed layers': (
        (ROUTED, MOT), r'config\.model\.moe\.mixture_of_transformers does not route attention.*'),
    'mot with scan_layers': (
        (MOT, '--config.model.scan_layers=True'),
        r'config\.model\.scan_layers does not apply to the Mixture-of-Transformers encoder.*'),
    'kv_heads not dividing heads': (
        ('--config.model.kv_heads=3',), r'config\.model\.kv_heads must be a positive divisor .*'),
    'cudnn head dim': (
        ('--config.model.attention_impl=cudnn', '--config.model.width=96',
         '--config.model.num_heads=8'),
        r"config\.model\.attention_impl='cudnn' needs a head dim .* got 12: .*"),
}


@pytest.mark.parametrize('name', sorted(REFUSED))
def test_dead_options_exit_2_before_compiling(name, tmp_path, capsys):
  args, pattern = REFUSED[name]
  assert _train(str(tmp_path / 'w'), *args) == 2
  err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
  assert len(err) == 1 and re.fullmatch(pattern, err[0][len('error: '):]), err
  assert not (tmp_path / 'w').exists()
