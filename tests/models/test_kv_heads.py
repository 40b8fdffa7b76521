"""`model.kv_heads`: grouped-query attention through the model and the kernels. A kv_heads=1
model equals the full-head model whose k/v projections repeat its one k/v head, on the XLA
path and the flash kernel (interpret mode, padded text as lengths); it trains on a mesh."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mmjax.core.tasks import task_signatures
from mmjax.models.model import build_model
from mmjax_testing import demo_config, synthetic_batch, train_steps

SMALL = ('--config.model.num_layers=1', '--config.tasks.image_text.batch_size=4')


def _repeated_kv(gqa: dict, heads: int) -> dict:
  """The kv_heads=1 params as a full-head model's: qkv = [q, k repeated, v repeated]."""
  out = jax.tree.map(lambda x: x, gqa)
  for name, block in out['encoder'].items():
    if not name.startswith('block_'):
      continue
    attn = block['attn']
    q, kv = attn.pop('q'), attn.pop('kv')
    rep = lambda a, axis: jnp.repeat(a, heads // a.shape[axis], axis=axis)
    kernel = jnp.concatenate([q['kernel'][:, None], rep(kv['kernel'], 2)], axis=1)
    bias = jnp.concatenate([q['bias'][None], rep(kv['bias'], 1)], axis=0)
    attn['qkv'] = {'kernel': kernel, 'bias': bias}   # [embed, 3, heads, kv], [3, heads, kv]
  return out


def test_one_kv_head_equals_repeated_kv():
  gqa_cfg = demo_config(*SMALL, '--config.model.kv_heads=1')
  full_cfg = demo_config(*SMALL)
  gqa = build_model(gqa_cfg, nnx.Rngs(params=0))
  graphdef, state = nnx.split(build_model(full_cfg, nnx.Rngs(params=1)))
  params = _repeated_kv(nnx.to_pure_dict(nnx.state(gqa)), full_cfg.model.num_heads)
  assert params['encoder']['block_0']['attn']['qkv']['kernel'].shape == (
      state['encoder']['block_0']['attn']['qkv']['kernel'].value.shape)
  full = nnx.merge(graphdef, params)
  task = next(t for t in task_signatures(gqa_cfg) if t.name == 'image_text')
  batch = synthetic_batch(task, batch_size=4)
  assert batch['text_mask'].min() == 0   # padded text: lengths through the kernels
  for impl in ('xla', 'pallas'):   # the reference, then the flash kernel (interpret mode)
    for m in (gqa, full):
      m.encoder.block_0.attn.impl = impl
    run = jax.jit(lambda b: [m.embed(b, mod) for m in (gqa, full) for mod in ('image', 'text')])
    a_img, a_txt, b_img, b_txt = run(batch)
    np.testing.assert_allclose(a_img, b_img, atol=2e-5)
    np.testing.assert_allclose(a_txt, b_txt, atol=2e-5)
  assert 'qkv' not in nnx.to_pure_dict(nnx.state(gqa))['encoder']['block_0']['attn']


def test_one_kv_head_trains_on_a_mesh():
  config = demo_config(*SMALL, '--config.model.kv_heads=1', '--config.tasks.image_text.batch_size=8')
  abstract, history, state = train_steps(config, {'data': 2, 'fsdp': 1, 'tensor': 2}, 4, 2)
  kv = abstract['params']['encoder']['block_0']['attn']['kv']['kernel']
  assert kv.shape == (128, 2, 1, 32)   # [embed, k/v, kv_heads, head_dim]
  losses = [float(h['loss']) for h in history]
  assert all(np.isfinite(losses)), losses
  assert state['step'] == 2
