"""Routed (BiFormer) attention inside the model, on meshes, with padding: the same losses on
every mesh, padding that never reaches real tokens, spatial windows as regions, the impl switch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax_testing import demo_config, train_steps
from mmjax import kernels
from mmjax.evaluate.embedder import Embedder
from mmjax.models import regions
from mmjax.models.encoder import routed_layer_indices
from mmjax.models.model import build_model, drop_tokens
from mmjax.core import partitioning
from mmjax.train import state as state_lib

# Both layers routed. Text (16 tokens) and audio: 1-D regions of 4 tokens, top 2. Image: the
# 4x4 patch grid padded to 6x6 (masked) and cut in 3x3 windows; video: 2x4x4 tubelets in 1x3x3
# space-time windows over the padded 2x6x6 grid. Synthetic text has padding of random length.
ROUTED = ('--config.model.num_layers=2', '--config.model.routed_attention.layers=(0,1)',
          '--config.model.routed_attention.block_size=4',
          '--config.model.routed_attention.top_k=2',
          '--config.model.routed_attention.window=3',
          '--config.model.routed_attention.window_frames=1')


def _config(*overrides):
  return demo_config('--config.optimizer.warmup_steps=1', '--config.tasks.image_text.batch_size=16',
                     '--config.tasks.video_text.batch_size=16', *ROUTED, *overrides)


def _needs_8():
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'


DATA8, TENSOR4, FSDP4 = {'data': 8}, {'data': 2, 'tensor': 4}, {'data': 2, 'fsdp': 4}


@pytest.mark.parametrize('impl,task,meshes', [
    ('xla', 'image_text', [DATA8, FSDP4]),  # tensor: the two cases below
    ('xla', 'video_text', [DATA8, TENSOR4]),
    # The Pallas kernel (interpreted) runs in shard_map with the heads split over `tensor`.
    ('pallas', 'image_text', [DATA8, TENSOR4]),
])
def test_routed_losses_agree_across_meshes(impl, task, meshes):
  _needs_8()
  config = _config(f'--config.model.attention_impl={impl}')
  losses = []
  for sizes in meshes:
    _, history, _ = train_steps(config, sizes, 8, 4, task_name=task)
    losses.append(np.array([float(m['loss']) for m in history]))
    print(impl, task, sizes, losses[-1].tolist())
  for sizes, got in zip(meshes, losses):
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, losses[0], rtol=1e-4, err_msg=str(sizes))


@pytest.mark.parametrize('overrides', [
    ('--config.model.attention_impl=xla',),
    ('--config.model.attention_impl=pallas', '--config.model.scan_layers=true'),
    ('--config.model.attention_impl=xla', '--config.model.pooling=cls'),
])
def test_text_embedding_ignores_padded_ids(overrides):
  """On a data 2 x tensor 4 mesh (the evaluation path), only the ids under the padding mask
  change: example 0 has whole padding regions (5 real tokens), example 1 a partial one."""
  _needs_8()
  config = _config(*overrides)
  mesh = partitioning.make_mesh({'data': 2, 'tensor': 4}, devices=jax.devices()[:8])
  graphdef, _, shardings = state_lib.abstract_train_state(config, mesh)
  params = state_lib.create_train_state(config, mesh, graphdef, shardings)['params']
  embedder = Embedder(config, graphdef, params, mesh)
  rng = np.random.default_rng(0)
  ids = rng.integers(1, 500, (2, 16)).astype(np.int32)
  mask = (np.arange(16) < np.array([[5], [11]])).astype(np.int32)
  noisy = np.where(mask == 1, ids, rng.integers(1, 500, ids.shape)).astype(np.int32)
  base = embedder.run('text', {'text': ids, 'text_mask': mask})['embed']
  other = embedder.run('text', {'text': noisy, 'text_mask': mask})['embed']
  diff = float(np.abs(other - base).max())
  print('max |diff|', diff)
  assert np.all(np.isfinite(base)) and diff <= 1e-5


def test_to_windows_groups_spatial_windows_by_hand():
  tokens = jnp.arange(9, dtype=jnp.float32).reshape(1, 9, 1) + 1.0    # a 3x3 grid, raster
  x, m = regions.to_windows(tokens, jnp.ones((1, 9), jnp.int32), (3, 3), (2, 2))
  # Padded to 4x4 (0 = padding): windows (rows 0-1, cols 0-1), (0-1, 2-3), (2-3, 0-1), (2-3, 2-3).
  np.testing.assert_array_equal(x[0, :, 0], [1, 2, 4, 5, 3, 0, 6, 0, 7, 8, 0, 0, 9, 0, 0, 0])
  np.testing.assert_array_equal(m[0], [1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 0])
  video = jnp.arange(16, dtype=jnp.float32).reshape(1, 16, 1)         # (t, h, w) = (2, 2, 4)
  x, _ = regions.to_windows(video, jnp.ones((1, 16), jnp.int32), (2, 2, 4), (2, 2, 2))
  np.testing.assert_array_equal(x[0, :, 0], [0, 1, 4, 5, 8, 9, 12, 13,
                                             2, 3, 6, 7, 10, 11, 14, 15])


def test_model_feeds_the_encoder_window_by_window():
  """Same parameters with and without routed layers: the routed model's image tokens are the
  dense model's, permuted into 2x2 windows of the 4x4 grid."""
  dense = build_model(demo_config('--config.model.num_layers=2'), nnx.Rngs(0))
  routed = build_model(demo_config(*ROUTED[:3], '--config.model.routed_attention.window=2'),
                       nnx.Rngs(0))
  image = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  raster, _ = dense.input_tokens('image', image)
  windowed, mask = routed.input_tokens('image', image)
  order = [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
  np.testing.assert_allclose(windowed, raster[:, order], rtol=1e-6)
  assert mask.shape == (2, 16) and int(mask.sum()) == 32
  assert routed.region_size('image') == 4 and routed.region_size('text') == 4


def test_drop_token_keeps_real_tokens_in_order():
  tokens = jnp.arange(12, dtype=jnp.float32).reshape(1, 12, 1)
  mask = jnp.asarray([[1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 0]], jnp.int32)   # 7 real
  kept, kept_mask = drop_tokens(tokens, mask, 0.5, jax.random.key(3))       # keeps 6
  values = np.asarray(kept[0, :, 0])
  assert np.all(np.diff(values) > 0) and np.all(np.asarray(kept_mask) == 1)
  assert set(values.tolist()) <= {0, 1, 2, 4, 5, 8, 9}


@pytest.mark.parametrize('impl,backend,want', [
    ('auto', 'tpu', 'pallas'), ('auto', 'gpu', 'xla'), ('auto', 'cpu', 'xla'),
    ('xla', 'tpu', 'xla'), ('cudnn', 'gpu', 'xla'), ('pallas', 'cpu', 'pallas')])
def test_routed_impl_switch(impl, backend, want):
  assert kernels.resolve_routed_impl(impl, backend) == want


@pytest.mark.parametrize('impl,pallas_calls', [('xla', False), ('pallas', True)])
def test_xla_impl_runs_no_pallas_kernel(impl, pallas_calls):
  model = build_model(_config(f'--config.model.attention_impl={impl}'), nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  batch = {'text': np.ones((2, 16), np.int32), 'text_mask': np.ones((2, 16), np.int32)}
  jaxpr = jax.make_jaxpr(lambda p: nnx.merge(graphdef, p).embed(batch, 'text'))(params)
  assert ('pallas_call' in str(jaxpr)) == pallas_calls


@pytest.mark.parametrize('key,value', [('window', 0), ('window_frames', -1), ('top_k', 0)])
def test_bad_region_sizes_name_the_key(key, value):
  config = _config(f'--config.model.routed_attention.{key}={value}')
  with pytest.raises(ValueError, match=f'routed_attention.{key} must be a positive int'):
    routed_layer_indices(config.model)
