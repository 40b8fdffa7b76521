"""MoE routing knobs: routing groups across examples, minimum capacity, load-balancing scale,
per-expert drop and capacity-use statistics, bad settings in one sentence, and the upcycling
warning about unnormalised combine weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax.models.moe import layer as moe
from moe_testing import close as _close, grads as _grads
from moe_testing import inputs as _inputs, layer as _layer, moe_config as _cfg
from tools import upcycle


def _run(cfg, x, mask, seed=5):
  layer = _layer(cfg, seed)
  return nnx.jit(lambda m, x, mask: m(x, mask))(layer, x, mask)


def test_group_size_routes_across_examples():
  # Groups of 2 examples: the same as routing the concatenated pairs as single examples.
  x, mask = _inputs(b=4, length=8)
  y, aux = _run(_cfg('tokens_choose', 4, 1, 0.5, '--config.model.moe.group_size=16'), x, mask)
  y_pairs, aux_pairs = _run(_cfg('tokens_choose', 4, 1, 0.5), x.reshape(2, 16, -1),
                            mask.reshape(2, 16))
  np.testing.assert_allclose(y, y_pairs.reshape(y.shape), atol=1e-6, rtol=1e-6)
  for key in ('dropped_fraction', 'expert_drop', 'capacity_use', 'expert_load'):
    np.testing.assert_allclose(aux[key], aux_pairs[key], rtol=1e-6)
  y_examples, aux_examples = _run(_cfg('tokens_choose', 4, 1, 0.5), x, mask)
  assert not np.allclose(y, y_examples)                  # a different grouping drops others


def test_min_capacity_keeps_every_token():
  x, mask = _inputs(b=4, length=8)
  _, tight = _run(_cfg('tokens_choose', 4, 2, 0.25), x, mask)
  _, roomy = _run(_cfg('tokens_choose', 4, 2, 0.25, '--config.model.moe.min_capacity=8'), x, mask)
  assert float(tight['dropped_fraction']) > 0.0
  assert float(roomy['dropped_fraction']) == 0.0
  assert moe.expert_capacity(8, 4, 2, 0.25) == 1 and moe.expert_capacity(8, 4, 2, 0.25, 8) == 8


def test_per_expert_drop_and_capacity_use_by_hand():
  cfg = _cfg('tokens_choose', 4, 1, 0.5)                  # capacity 1 per example
  layer = _layer(cfg, 1)
  x, _ = _inputs()
  mask = jnp.ones(x.shape[:2], jnp.int32)
  _, aux = nnx.jit(lambda m, x: m(x, mask))(layer, x)
  choice = np.asarray(jnp.argmax(layer.router_logits(x), -1))     # [batch, length]
  claims = np.stack([np.bincount(c, minlength=4) for c in choice])  # [batch, experts]
  kept = np.minimum(claims, 1)
  want_drop = (claims - kept).sum(0) / np.maximum(claims.sum(0), 1)
  np.testing.assert_allclose(aux['expert_drop'], want_drop, rtol=1e-6)
  np.testing.assert_allclose(aux['capacity_use'], kept.sum(0) / (1 * 4), rtol=1e-6)


def test_load_balancing_scale_switch_is_top_k_times():
  x, mask = _inputs()
  _, slot = _run(_cfg('tokens_choose', 4, 2, 2.0), x, mask)
  switch_cfg = _cfg('tokens_choose', 4, 2, 2.0, '--config.model.moe.load_balancing_scale=switch')
  _, switch = _run(switch_cfg, x, mask)
  np.testing.assert_allclose(float(switch['load_balancing_loss']),
                             2 * float(slot['load_balancing_loss']), rtol=1e-6)
  # Perfect balance by hand: uniform router probabilities, every expert chosen equally often.
  probs = jnp.full((8, 4), 0.25)
  index = jnp.asarray(np.arange(16).reshape(8, 2) % 4)
  assert float(moe.load_balancing_loss(probs, index)) == pytest.approx(1.0)


@pytest.mark.parametrize('ep', [2, 4])
def test_group_size_is_mesh_independent(ep):
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  x, mask = _inputs(b=8)
  for router in ('tokens_choose', 'dropless'):
    cfg = _cfg(router, 8, 2, 1.0, '--config.model.moe.group_size=16')
    y_want, g_want, _ = _grads(cfg, x, mask, None)
    y, g, hlo = _grads(cfg, x, mask, {'data': 8 // ep, 'expert': ep})
    _close(y, y_want, f'{router} y, expert={ep}')
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_want)):
      _close(a, b, f'{router} grad, expert={ep}')
    assert 'all-to-all' in hlo or router == 'tokens_choose'   # there XLA's choice
  y_plain, _, _ = _grads(_cfg('dropless', 8, 2, 1.0), x, mask, None)
  _close(y_want, y_plain, 'dropless does not depend on group_size')


@pytest.mark.parametrize('flag,match', [
    ('--config.model.moe.comm_dtype=int8', "comm_dtype is 'int8'"),
    ('--config.model.moe.load_balancing_scale=k', "load_balancing_scale is 'k'"),
    ('--config.model.moe.min_capacity=-1', 'min_capacity=-1 must be >= 0'),
    ('--config.model.moe.exchange=ring', "exchange is 'ring'"),
])
def test_bad_knobs_one_sentence(flag, match):
  with pytest.raises(moe.MoeConfigError, match=match) as e:
    moe.check_moe_config(_cfg('tokens_choose', 4, 1, 1.0, flag))
  assert str(e.value).count('. ') == 0 and str(e.value).endswith('.')


def test_group_size_must_divide_the_batch():
  x, mask = _inputs(b=4, length=8)
  with pytest.raises(moe.MoeConfigError, match='group_size=12 does not divide the 4x8 tokens'):
    _run(_cfg('tokens_choose', 4, 1, 1.0, '--config.model.moe.group_size=12'), x, mask)


def test_upcycle_warns_about_unnormalised_combine_weights(tmp_path, capsys):
  argv = [f'--dense_workdir={tmp_path / "none"}', '--config=configs/demo_moe.py',
          f'--workdir={tmp_path / "moe"}']
  assert upcycle.main(argv) == 2                          # no dense run: refused after the warning
  err = capsys.readouterr().err
  assert 'normalize_combine_weights is False' in err
  assert not (tmp_path / 'moe').exists()
  assert upcycle.main(argv + ['--config.model.moe.normalize_combine_weights=True']) == 2
  assert 'normalize_combine_weights' not in capsys.readouterr().err
