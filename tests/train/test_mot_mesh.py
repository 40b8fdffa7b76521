"""Mixture-of-Transformers at scale: per-modality weights are sharded on fsdp/tensor like the
dense layers' (never replicated), and training on `data 2 x fsdp 2 x tensor 2` gives one
device's losses, on a fused (mixed-modality, grouped) task and a one-modality (fast path) task."""

import jax
import numpy as np
import pytest

from mmjax_testing import demo_config, train_steps
from mmjax.config.defaults import task as task_config


def _config():
  config = demo_config('--config.model.num_layers=1', '--config.model.width=32',
                       '--config.model.num_heads=4', '--config.model.mlp_dim=64',
                       '--config.model.embed_dim=16', '--config.model.attention_impl=xla',
                       '--config.model.moe.mixture_of_transformers=True')
  with config.tasks.unlocked():
    config.tasks.av_classify = task_config(
        'mmjax_digits', 'video,audio', 8, classify='video,audio', num_classes=10,
        image_size=32, num_frames=8, audio_samples=4096)
  return config


MESH = {'data': 2, 'fsdp': 2, 'tensor': 2}


@pytest.mark.parametrize('task_name', ['av_classify', 'image_text'])
def test_mot_on_data_fsdp_tensor_mesh_is_sharded_and_matches_one_device(task_name):
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  config = _config()
  abstract, hist, state = train_steps(config, MESH, 8, 2, task_name=task_name)
  _, want, _ = train_steps(config, {'data': 1}, 1, 2, task_name=task_name)
  for got, exp in zip(hist, want):
    np.testing.assert_allclose(got['loss'], exp['loss'], rtol=1e-5, atol=1e-6)
  params = state['params']['encoder']['block_0']
  # [modalities, embed, mlp] and [modalities, embed, 3, heads, kv]: embed on fsdp, mlp/heads
  # on tensor; each device holds a quarter of every per-modality matrix.
  for leaf, axes in ((params['wi']['kernel'], (None, 'fsdp', 'tensor')),
                     (params['wo']['kernel'], (None, 'tensor', 'fsdp')),
                     (params['qkv']['kernel'], (None, 'fsdp', None, 'tensor', None)),
                     (params['out']['kernel'], (None, 'tensor', None, 'fsdp'))):
    assert tuple(leaf.sharding.spec) + (None,) * (leaf.ndim - len(leaf.sharding.spec)) == axes
    shard = leaf.sharding.shard_shape(leaf.shape)
    assert np.prod(shard) * 4 == np.prod(leaf.shape), (leaf.shape, shard)
