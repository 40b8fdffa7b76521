"""Routing functions against plain-Python implementations of the contract (mmjax.models.moe.layer)."""

import math
import os

import numpy as np
import pytest

from mmjax.models.moe import layer as moe


def _softmax(x):
  z = np.exp(x - x.max(-1, keepdims=True))
  return z / z.sum(-1, keepdims=True)


def _probs(logits):
  # The float32 softmax the router uses: rows whose values are permutations of each other are
  # equal in exact arithmetic but may differ in the last bit, so rankings use these values.
  return np.asarray(moe.router_probs(logits))


def _logits(seed, tokens, experts, ties=False):
  rng = np.random.default_rng(seed)
  if ties:  # repeated rows of few values: exact probability ties between experts and tokens
    rows = rng.integers(0, 3, (4, experts)).astype(np.float32)
    return rows[rng.integers(0, 4, tokens)]
  return rng.normal(size=(tokens, experts)).astype(np.float32)


def ref_tokens_choose(logits, top_k, capacity, mask=None, batch_prioritized=False):
  t, e = logits.shape
  p = p32 = _probs(logits)
  choices = [sorted(range(e), key=lambda j: (-p32[i, j], j))[:top_k] for i in range(t)]
  order = list(range(t))
  if batch_prioritized:
    order = sorted(order, key=lambda i: (-p32[i, choices[i][0]], i))
  index = np.array(choices, np.int32)
  weight = np.zeros((t, top_k), np.float32)
  position = -np.ones((t, top_k), np.int32)
  fill = [0] * e
  for c in range(top_k):
    for i in order:
      if mask is not None and not mask[i]:
        continue
      ex = choices[i][c]
      if fill[ex] < capacity:
        position[i, c], weight[i, c] = fill[ex], p[i, ex]
        fill[ex] += 1
  return index, weight, position


def ref_experts_choose(logits, capacity):
  p = _probs(logits)
  t, e = p.shape
  idx = np.zeros((e, capacity), np.int32)
  w = np.zeros((e, capacity), np.float32)
  for ex in range(e):
    ranked = sorted(range(t), key=lambda i: (-p[i, ex], i))[:capacity]
    idx[ex] = ranked
    w[ex] = [p[i, ex] for i in ranked]
  return idx, w


@pytest.mark.parametrize('top_k,capacity,ties,bpr', [
    (2, 4, False, False), (2, 2, True, False), (1, 3, False, True), (3, 5, True, True),
    (2, 100, False, False)])
def test_tokens_choose_matches_reference(top_k, capacity, ties, bpr):
  logits = _logits(top_k * 10 + capacity, 24, 6, ties)
  got = moe.route_tokens_choose(logits, top_k, capacity, batch_prioritized=bpr)
  want = ref_tokens_choose(logits, top_k, capacity, batch_prioritized=bpr)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[2], want[2])
  np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-7)
  assert got[0].dtype == np.int32 and got[2].dtype == np.int32 and got[1].dtype == np.float32
  if capacity < 24 * top_k / 6:
    assert (np.asarray(got[2]) == -1).any()       # something was dropped at capacity


def test_tokens_choose_padding_claims_no_capacity():
  logits = _logits(3, 16, 4)
  mask = np.arange(16) % 3 != 0
  got = moe.route_tokens_choose(logits, 2, 3, mask=mask)
  want = ref_tokens_choose(logits, 2, 3, mask=mask)
  np.testing.assert_array_equal(got[2], want[2])
  np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
  assert (np.asarray(got[2])[~mask] == -1).all()


@pytest.mark.parametrize('capacity,ties', [(1, False), (5, True), (20, True)])
def test_experts_choose_matches_reference(capacity, ties):
  logits = _logits(capacity, 20, 5, ties)
  idx, w = moe.route_experts_choose(logits, capacity)
  ridx, rw = ref_experts_choose(logits, capacity)
  np.testing.assert_array_equal(idx, ridx)
  np.testing.assert_allclose(w, rw, rtol=1e-6)


def test_experts_choose_never_prefers_padding():
  logits = _logits(5, 10, 3)
  mask = np.array([1, 0] * 5)
  idx, w = moe.route_experts_choose(logits, 6, mask=mask)
  idx, w = np.asarray(idx), np.asarray(w)
  assert np.all(mask[idx[:, :5]] == 1) and np.all(mask[idx[:, 5]] == 0) and np.all(w[:, 5] == 0)


def test_aux_losses_match_switch_definitions():
  logits = _logits(7, 32, 8)
  p = _softmax(logits.astype(np.float64))
  idx = p.argmax(-1)
  f = np.bincount(idx, minlength=8) / 32
  want = 8 * np.sum(f * p.mean(0))
  np.testing.assert_allclose(moe.load_balancing_loss(p.astype(np.float32), idx[:, None]), want,
                             rtol=1e-5)
  z = np.log(np.exp(logits.astype(np.float64)).sum(-1))
  np.testing.assert_allclose(moe.router_z_loss(logits), np.mean(z ** 2), rtol=1e-5)
  uniform = np.full((4, 8), 1 / 8, np.float32)
  balanced = np.arange(8).reshape(4, 2)          # top-2, every expert one slot in eight
  np.testing.assert_allclose(moe.load_balancing_loss(uniform, balanced), 1.0, rtol=1e-6)


def test_aux_losses_ignore_padding():
  logits = _logits(9, 12, 4)
  p = _softmax(logits).astype(np.float32)
  mask = np.array([1] * 8 + [0] * 4)
  idx = p.argmax(-1)[:, None]
  np.testing.assert_allclose(moe.load_balancing_loss(p, idx, mask),
                             moe.load_balancing_loss(p[:8], idx[:8]), rtol=1e-6)
  np.testing.assert_allclose(moe.router_z_loss(logits, mask), moe.router_z_loss(logits[:8]),
                             rtol=1e-6)


def test_capacity_formula():
  assert moe.expert_capacity(256, 16, 1, 1.25) == 20
  assert moe.expert_capacity(10, 4, 2, 1.0) == math.ceil(5.0)
  assert moe.expert_capacity(3, 16, 1, 1.0) == 1


def test_routing_rows_and_heatmaps(tmp_path):
  from mmjax.train import routing_stats
  stats = lambda load, drop: {'expert_load': np.asarray(load, np.float32),
                              'dropped_fraction': np.float32(drop),
                              'router_entropy': np.float32(1.0)}
  metrics = {'image': {'layer_3': stats([0.5, 0.5, 0, 0], 0.25), 'layer_1': stats([1, 0, 0, 0], 0)},
             'text': {'layer_1': stats([0.25] * 4, 0.0)}}
  rows = routing_stats.routing_rows(metrics)
  assert rows['moe/image/layer_3/dropped_fraction'] == 0.25
  assert rows['moe/image/layer_3/expert_load/1'] == 0.5
  assert rows['moe/image/layer_1/expert_load_max'] == 4.0
  assert rows['moe/text/layer_1/expert_load_max'] == 1.0
  assert all(isinstance(v, float) for v in rows.values())
  layers, load = routing_stats.load_matrix(metrics['image'])
  assert layers == ['layer_1', 'layer_3'] and load.shape == (2, 4) and load[1, 0] == 0.5
  paths = routing_stats.plot_routing_heatmaps(metrics, str(tmp_path), 30)
  assert sorted(os.path.basename(p) for p in paths) == ['moe_load_image_step_30.png',
                                                         'moe_load_text_step_30.png']
  assert all(os.path.dirname(p) == str(tmp_path / 'plots') and os.path.getsize(p) > 0
             for p in paths)
  by_step = {10: metrics, 20: {'image': {'layer_1': stats([0, 1, 0, 0], 0)}}}
  paths = routing_stats.plot_routing_heatmaps(by_step, str(tmp_path), 20)
  assert len(paths) == 2
