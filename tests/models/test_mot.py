"""Mixture-of-Transformers: per-modality weights, global attention, and fusion in the model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax_testing import demo_config, synthetic_batch
from moe_testing import random_module
from mmjax.config.defaults import task as task_config
from mmjax.core import partitioning
from mmjax.core.tasks import tasks_from_config
from mmjax.models import mot
from mmjax.models.encoder import Block
from mmjax.models.model import build_model


def _cfg(*extra):
  return demo_config('--config.model.num_layers=1', '--config.model.width=32',
                     '--config.model.num_heads=4', '--config.model.mlp_dim=64',
                     '--config.model.qk_norm=True', '--config.model.attention_impl=xla',
                     '--config.model.moe.mixture_of_transformers=True', *extra)


def _mot_block(cfg, seed):
  return random_module(lambda: mot.MotBlock(cfg, 3, rngs=nnx.Rngs(0), dtype=jnp.float32), seed)


def _inputs(seed=0, b=2, length=10, d=32):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(b, length, d)), jnp.float32)
  mask = jnp.asarray(np.arange(length)[None] < np.array([[length], [length - 3]]), jnp.int32)
  return x, mask


def _block_params(p, m):
  """Modality m's slice of a MotBlock's parameters, laid out as encoder.Block's."""
  take = lambda t: jax.tree.map(lambda a: a[m], t)
  return {'norm1': take(p['norm1']), 'norm2': take(p['norm2']),
          'attn': {'qkv': take(p['qkv']), 'out': take(p['out']), 'q_norm': take(p['q_norm']),
                   'k_norm': take(p['k_norm'])},
          'mlp': {'wi': take(p['wi']), 'wo': take(p['wo'])}}


def test_one_modality_equals_standard_block_with_its_weights():
  cfg = _cfg().model
  block = _mot_block(cfg, 0)
  p = nnx.to_pure_dict(nnx.state(block))
  x, mask = _inputs()
  m = 2
  dense = random_module(lambda: Block(cfg, rngs=nnx.Rngs(0), dtype=jnp.float32, moe=False))
  nnx.update(dense, _block_params(p, m))
  want, _ = nnx.jit(lambda blk, x: blk(x, mask))(dense, x)
  got = nnx.jit(lambda blk, x: blk(x, mask, jnp.full(mask.shape, m)))(block, x)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def _reference_block(p, x, mask, ids):
  """Per-token weights gathered by modality id, no sorting: an independent MoT block."""
  def ln(x, n):
    mu = x.mean(-1, keepdims=True)
    y = (x - mu) / jnp.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-6)
    return y * n['scale'][ids if y.ndim == 3 else ids[..., None]] + n['bias'][
        ids if y.ndim == 3 else ids[..., None]]
  qkv = jnp.einsum('bld,bldfhk->blfhk', ln(x, p['norm1']), p['qkv']['kernel'][ids])
  qkv = qkv + p['qkv']['bias'][ids]
  q, k, v = ln(qkv[:, :, 0], p['q_norm']), ln(qkv[:, :, 1], p['k_norm']), qkv[:, :, 2]
  s = jnp.einsum('bqhk,bthk->bhqt', q, k) / np.sqrt(q.shape[-1])
  allowed = mask[:, None, :, None] == mask[:, None, None, :]
  a = jax.nn.softmax(jnp.where(allowed, s, -1e30), -1)
  o = jnp.einsum('bhqt,bthk->bqhk', a, v)
  x = x + jnp.einsum('blhk,blhkd->bld', o, p['out']['kernel'][ids]) + p['out']['bias'][ids]
  h = jax.nn.gelu(jnp.einsum('bld,bldf->blf', ln(x, p['norm2']), p['wi']['kernel'][ids])
                  + p['wi']['bias'][ids])
  return x + jnp.einsum('blf,blfd->bld', h, p['wo']['kernel'][ids]) + p['wo']['bias'][ids]


def test_mixed_modalities_match_reference_and_attend_across():
  cfg = _cfg().model
  block = _mot_block(cfg, 2)
  p = nnx.to_pure_dict(nnx.state(block))
  x, mask = _inputs(1)
  ids = jnp.asarray(np.random.default_rng(3).integers(0, 3, mask.shape), jnp.int32)
  run = nnx.jit(lambda blk, x: blk(x, mask, ids))
  got = run(block, x)
  real = np.asarray(mask) > 0   # padding past the last real token is skipped (zero attention)
  np.testing.assert_allclose(np.asarray(got)[real],
                             np.asarray(_reference_block(p, x, mask, ids))[real],
                             atol=1e-5, rtol=1e-5)
  # Changing the modality-0 tokens changes the real tokens of the other modalities.
  noise = jnp.asarray(np.random.default_rng(4).normal(size=x.shape), jnp.float32)
  moved = run(block, jnp.where((ids == 0)[..., None], x + noise, x))
  others = np.asarray((ids != 0) & (mask > 0))
  assert others.any()
  assert np.all(np.abs(np.asarray(moved - got)).sum(-1)[others] > 1e-4)


def test_model_fuses_classification_but_not_contrastive_tasks():
  config = _cfg('--config.model.embed_dim=16')
  with config.tasks.unlocked():
    config.tasks.av_classify = task_config(
        'mmjax_digits', 'video,audio', 4, classify='video,audio', num_classes=10,
        image_size=32, num_frames=8, audio_samples=4096)
  tasks = {t.name: t.signatures()[0] for t in tasks_from_config(config)}
  model = random_module(lambda: build_model(config, nnx.Rngs(0)), 0)
  assert isinstance(model.encoder, mot.MotEncoder)
  run = nnx.jit(lambda mdl, batch, task: mdl(batch, task), static_argnums=2)
  av, it = tasks['av_classify'], tasks['image_text']
  batch = synthetic_batch(av, 0)
  base = run(model, batch, av)['logits']['video']
  other_audio = np.roll(batch['audio'], 1000, axis=-1)      # other sounds, same int16 dtype
  moved = run(model, dict(batch, audio=other_audio), av)['logits']['video']
  # The same program on the same video: any difference at all comes from the audio tokens
  # (random weights make it small, ~1e-7, so no threshold above float noise).
  assert np.abs(np.asarray(moved - base)).max() > 0         # video saw the audio tokens
  batch = synthetic_batch(it, 0)
  base = run(model, batch, it)['embeddings']['image']
  other = dict(batch, text=(batch['text'] + 7) % 100)
  np.testing.assert_array_equal(run(model, other, it)['embeddings']['image'], base)


def test_mesh_gives_the_same_block_output():
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  cfg = _cfg().model
  block = _mot_block(cfg, 5)
  x, _ = _inputs(2, b=8)
  mask = jnp.ones(x.shape[:2], jnp.int32).at[1:3, -2:].set(0)
  ids = jnp.asarray(np.random.default_rng(6).integers(0, 3, mask.shape), jnp.int32)
  graphdef, params = nnx.split(block)
  fn = lambda p, x, m, i: nnx.merge(graphdef, p)(x, m, i)
  want = jax.jit(fn)(params, x, mask, ids)
  mesh = partitioning.make_mesh({'data': 4, 'tensor': 2})

  def sharded(p, x, m, i):
    with partitioning.axis_rules(mesh, partitioning.DEFAULT_RULES):
      return fn(p, x, m, i)
  args = jax.device_put((x, mask, ids), partitioning.batch_sharding(mesh))
  np.testing.assert_allclose(jax.jit(sharded)(params, *args), want, atol=1e-5, rtol=1e-5)


def test_one_modality_fast_path_equals_grouped_path_with_gradients():
  """A Python-int modality (plain matmuls, no sort) gives the grouped path's outputs and grads."""
  cfg = _cfg().model
  block = _mot_block(cfg, 7)
  graphdef, params = nnx.split(block)
  x, mask = _inputs(3)
  ct = jnp.asarray(np.random.default_rng(8).normal(size=x.shape), jnp.float32)
  loss = lambda p, x, ids: jnp.sum(nnx.merge(graphdef, p)(x, mask, ids) * ct)
  fast = jax.jit(jax.grad(lambda p, x: loss(p, x, 1), (0, 1)))(params, x)
  grouped = jax.jit(jax.grad(lambda p, x: loss(p, x, jnp.full(mask.shape, 1)), (0, 1)))(params, x)
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(grouped)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
  grads = nnx.to_pure_dict(fast[0])
  assert np.abs(np.asarray(grads['wi']['kernel'][1])).max() > 0
  assert np.abs(np.asarray(grads['wi']['kernel'][0])).max() == 0   # other modalities untouched
