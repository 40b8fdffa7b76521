"""Dropless buffers sized by real traffic (`moe.dropless_capacity_factor`): within capacity the
expert-parallel layer equals one device's; past it, the claims over capacity are exactly the
ones a numpy simulation of the documented rule drops (counted in `dropped_fraction`), and
every token whose claims all fit is still exact."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mmjax.core import partitioning
from mmjax.models.moe.expert_exchange import capacity_rows
from mmjax.train.state import logical_axes
from moe_testing import inputs as _inputs, layer as _layer, moe_config as _cfg

EP, EXPERTS, TOP_K = 4, 8, 2
B, LENGTH = 8, 32


def _run(cfg, x, mask, sizes):
  layer = _layer(cfg, seed=3)
  graphdef, state = nnx.split(layer)
  params = nnx.to_pure_dict(state)
  fn = lambda p, x, m: nnx.merge(graphdef, p)(x, m)
  if sizes is None:
    return jax.jit(fn)(params, x, mask), params
  mesh = partitioning.make_mesh(sizes)
  rules = partitioning.DEFAULT_RULES
  shard = jax.tree.map(lambda p, a: partitioning.named_sharding(mesh, a, rules, p.shape),
                       params, logical_axes(state), is_leaf=lambda t: isinstance(t, tuple))

  def sharded(p, x, m):
    with partitioning.axis_rules(mesh, rules):
      return fn(p, x, m)
  x, mask = (jax.device_put(a, partitioning.batch_sharding(mesh)) for a in (x, mask))
  return jax.jit(sharded)(jax.device_put(params, shard), x, mask), params


def _simulated_kept(params, x, mask, exchange, factor):
  """`kept [B, LENGTH, TOP_K]` bool by the rule in expert_exchange.py: each device (a run of
  B / 8 examples; devices d * EP .. d * EP + EP - 1 share an expert group) sorts its claims by
  expert; 'all_to_all' keeps the first ceil(capacity / EP) per (source, destination),
  'ragged' the first `capacity` per destination, sources in device order."""
  x, mask = np.asarray(x), np.asarray(mask)
  logits = x @ np.asarray(params['router']['kernel'])
  index = np.argsort(-logits, axis=-1, kind='stable')[..., :TOP_K]   # [B, LENGTH, TOP_K]
  per_dev = B // 8
  c = per_dev * LENGTH * TOP_K
  capacity = capacity_rows(c, EP, factor)
  chunk = -(-capacity // EP)
  kept = np.zeros(index.shape, bool)
  for group in range(8 // EP):
    filled = np.zeros(EP, int)                 # ragged: rows already in each receiver
    for src in range(EP):
      ex = slice((group * EP + src) * per_dev, (group * EP + src + 1) * per_dev)
      claims = np.where(mask[ex][..., None] > 0, index[ex], EXPERTS).reshape(-1)
      order = np.argsort(claims, kind='stable')
      flat_kept = np.zeros(claims.shape, bool)
      for dest in range(EP):
        mine = [i for i in order if claims[i] // (EXPERTS // EP) == dest and claims[i] < EXPERTS]
        room = chunk if exchange == 'all_to_all' else max(capacity - filled[dest], 0)
        flat_kept[mine[:room]] = True
        filled[dest] += len(mine)
      kept[ex] = flat_kept.reshape(kept[ex].shape)
  return kept


def test_capacity_is_exact_within_and_counts_overflow():
  x, mask = _inputs(b=B, length=LENGTH)
  (y_one, _), params = _run(_cfg('dropless', EXPERTS, TOP_K, 1.0), x, mask, None)
  real = np.asarray(mask) > 0
  claims = real.sum() * TOP_K
  for exchange, factor in (('all_to_all', 2.0), ('all_to_all', 0.5), ('ragged', 0.5)):
    over = (f'--config.model.moe.exchange={exchange}',
            f'--config.model.moe.dropless_capacity_factor={factor}')
    (y, aux), _ = _run(_cfg('dropless', EXPERTS, TOP_K, 1.0, *over), x, mask,
                       {'data': 8 // EP, 'expert': EP})
    kept = _simulated_kept(params, x, mask, exchange, factor)
    dropped = claims - kept[real].sum()
    assert capacity_rows(LENGTH * TOP_K, EP, factor) < EP * LENGTH * TOP_K   # below worst case
    np.testing.assert_allclose(float(aux['dropped_fraction']), dropped / claims, rtol=1e-6)
    whole = real & kept.all(-1)                   # tokens none of whose claims overflowed
    if factor >= 2:
      assert dropped == 0 and whole.sum() == real.sum(), (exchange, factor, dropped)
    else:
      assert 0 < dropped and whole.sum() > 0, (exchange, factor, dropped)
      assert not np.allclose(np.asarray(y)[real & ~whole], np.asarray(y_one)[real & ~whole],
                             atol=1e-5)
    np.testing.assert_allclose(np.asarray(y)[whole], np.asarray(y_one)[whole], atol=1e-5)


def test_gradients_within_capacity_match_one_device():
  """'ragged' (the TPU/GPU exchange; its CPU stand-in here) at 3/4 of the worst-case buffer."""
  from moe_testing import close as _close, grads as _grads  # pylint: disable=g-import-not-at-top
  x, mask = _inputs(b=8)
  assert capacity_rows(8 * TOP_K, EP, 3.0) < EP * 8 * TOP_K
  y_want, g_want, _ = _grads(_cfg('dropless', EXPERTS, TOP_K, 1.0), x, mask, None)
  y, g, _ = _grads(_cfg('dropless', EXPERTS, TOP_K, 1.0, '--config.model.moe.exchange=ragged',
                        '--config.model.moe.dropless_capacity_factor=3'), x, mask,
                   {'data': 8 // EP, 'expert': EP})
  _close(y, y_want, 'y')
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g), jax.tree.leaves(g_want)):
    _close(a, b, f'grad {jax.tree_util.keystr(path)}')
