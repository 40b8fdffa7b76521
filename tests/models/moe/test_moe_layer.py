"""The MoE layer: equals a dense mixture when nothing is dropped, is mesh-independent under expert
parallelism, drops over capacity, reports statistics, and rejects bad settings in one sentence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax.core import partitioning
from mmjax.models.moe import layer as moe
from mmjax.train.state import logical_axes
from mmjax_testing import demo_config
from moe_testing import inputs as _inputs, layer as _layer, moe_config as _cfg


def dense_mixture(params, x, mask, router, top_k):
  """sum over chosen experts of p_e * expert_e(x), written token-by-expert with no dispatch."""
  logits = jnp.einsum('bld,de->ble', x, params['router']['kernel'])
  p = jax.nn.softmax(logits, -1)
  wi, bi = params['wi']['kernel'], params['wi']['bias']
  wo, bo = params['wo']['kernel'], params['wo']['bias']
  h = jax.nn.gelu(jnp.einsum('bld,edh->bleh', x, wi) + bi)
  out = jnp.einsum('bleh,ehd->bled', h, wo) + bo                    # every expert on every token
  if router == 'experts_choose':                                    # capacity = all tokens
    gate = p
  else:
    kth = jnp.sort(p, -1)[..., -top_k][..., None]
    gate = jnp.where(p >= kth, p, 0.0)
  return jnp.einsum('ble,bled->bld', gate, out) * mask[..., None]


@pytest.mark.parametrize('router,top_k', [('tokens_choose', 2), ('experts_choose', 1),
                                          ('dropless', 2), ('tokens_choose', 1)])
def test_no_drop_equals_dense_mixture_with_gradients(router, top_k):
  cfg = _cfg(router, 4, top_k, 4.0 / top_k)                         # capacity = length
  layer = _layer(cfg, 0)
  graphdef, params = nnx.split(layer)
  params = nnx.to_pure_dict(params)
  x, mask = _inputs()
  ct = jnp.asarray(np.random.default_rng(1).normal(size=x.shape), jnp.float32)

  def ours(p, x):
    y, aux = nnx.merge(graphdef, p)(x, mask)
    return jnp.sum(y * ct), (y, aux)

  def ref(p, x):
    y = dense_mixture(p, x, mask, router, top_k)
    return jnp.sum(y * ct), y

  (_, (y, aux)), g = jax.jit(jax.value_and_grad(ours, (0, 1), has_aux=True))(params, x)
  (_, y_ref), g_ref = jax.jit(jax.value_and_grad(ref, (0, 1), has_aux=True))(params, x)
  np.testing.assert_allclose(y, y_ref, atol=2e-5, rtol=1e-4)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=5e-5, rtol=1e-3)
  assert float(aux['dropped_fraction']) == 0.0
  np.testing.assert_allclose(float(aux['expert_load'].sum()), 1.0, rtol=1e-6)
  assert 0.0 < float(aux['router_entropy']) <= np.log(4) + 1e-6
  assert all(v.dtype == jnp.float32 for v in aux.values())


def test_over_capacity_tokens_are_dropped_and_counted():
  cfg = _cfg('tokens_choose', 4, 1, 0.5)                            # capacity 1 of 8 tokens
  layer = _layer(cfg, 1)
  x, _ = _inputs()
  mask = jnp.ones(x.shape[:2], jnp.int32)
  y, aux = nnx.jit(lambda m, x: m(x, mask))(layer, x)
  logits = layer.router_logits(x)
  _, _, pos = jax.jit(jax.vmap(lambda lg: moe.route_tokens_choose(lg, 1, 1)))(logits)
  dropped = np.asarray(pos[..., 0] < 0)
  assert dropped.any()
  np.testing.assert_array_equal(np.asarray(y)[dropped], 0.0)
  assert np.all(np.abs(np.asarray(y)[~dropped]).sum(-1) > 0)
  np.testing.assert_allclose(float(aux['dropped_fraction']), dropped.mean(), rtol=1e-6)


def test_jitter_only_with_rng():
  cfg = _cfg('tokens_choose', 4, 1, 2.0, '--config.model.moe.jitter=0.5')
  layer = _layer(cfg, 2)
  x, mask = _inputs()
  run = nnx.jit(lambda m, x, rng: m(x, mask, rng=rng)[1]['router_z_loss'])
  a, b = run(layer, x, None), run(layer, x, None)
  assert float(a) == float(b)
  assert float(run(layer, x, jax.random.key(0))) != float(a)


def _sharded_run(cfg, x, mask, sizes):
  layer = _layer(cfg, 3)
  graphdef, state = nnx.split(layer)
  params = nnx.to_pure_dict(state)
  if sizes is None:
    return jax.jit(lambda p: nnx.merge(graphdef, p)(x, mask)[0])(params), None
  mesh = partitioning.make_mesh(sizes)
  rules = partitioning.DEFAULT_RULES
  moe.check_moe_config(cfg, dict(mesh.shape))
  shard = jax.tree.map(lambda p, a: partitioning.named_sharding(mesh, a, rules, p.shape),
                       params, logical_axes(state), is_leaf=lambda t: isinstance(t, tuple))
  params = jax.device_put(params, shard)
  xs = jax.device_put(x, partitioning.batch_sharding(mesh))
  ms = jax.device_put(mask, partitioning.batch_sharding(mesh))
  assert params['wi']['kernel'].sharding.spec[0] == 'expert'

  def run(p, x, m):
    with partitioning.axis_rules(mesh, rules):
      return nnx.merge(graphdef, p)(x, m)[0]
  fn = jax.jit(run)
  return fn(params, xs, ms), fn.lower(params, xs, ms).compile().as_text()


@pytest.mark.parametrize('router,expert_sizes', [('tokens_choose', (2, 4, 8)),
                                                 ('experts_choose', (4,)), ('dropless', (8,))])
def test_expert_parallel_matches_one_device(router, expert_sizes):
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  cfg = _cfg(router, 8, 2, 1.0)
  x, mask = _inputs(b=8)
  want, _ = _sharded_run(cfg, x, mask, None)
  for e in expert_sizes:
    got, hlo = _sharded_run(cfg, x, mask, {'data': 8 // e, 'expert': e})
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=f'expert={e}')
    if router != 'dropless':
      assert 'all-to-all' in hlo, f'no all-to-all on expert axis {e}'


@pytest.mark.parametrize('overrides,match', [
    (('--config.model.moe.top_k=5',), 'top_k=5 must be between 1 and num_experts=4'),
    (('--config.model.moe.every=0', '--config.model.moe.last_n=3'), 'exceed the encoder depth'),
    (('--config.model.moe.router=switch',), "router is 'switch'"),
])
def test_bad_settings_one_sentence(overrides, match):
  config = demo_config('--config.model.num_layers=2', '--config.model.moe.num_experts=4',
                       '--config.model.moe.every=2', *overrides)
  with pytest.raises(moe.MoeConfigError, match=match) as e:
    moe.check_moe_config(config.model)
  assert str(e.value).count('. ') == 0 and str(e.value).endswith('.')
  with pytest.raises(moe.MoeConfigError):
    moe.MoeMlp(config.model, rngs=nnx.Rngs(0), dtype=jnp.float32)


def test_expert_axis_must_divide_experts():
  config = demo_config('--config.model.moe.num_experts=6', '--config.model.moe.every=2')
  moe.check_moe_config(config.model, {'data': 4, 'expert': 2})
  with pytest.raises(moe.MoeConfigError, match='num_experts=6 is not divisible by the expert mesh '
                                                'axis of size 4'):
    moe.check_moe_config(config.model, {'data': 2, 'expert': 4})
