"""MultiMAE's visible-token budget and its Dirichlet split across modalities."""

import jax
import numpy as np
import pytest

from mmjax.models.multimae_masking import split_visible_budget, visible_mask

TOKENS = {'image': 16, 'video': 32, 'audio': 24}


def test_split_sums_to_the_budget_and_respects_capacity():
  counts = split_visible_budget(jax.random.key(0), TOKENS, 20, 1.0, 512)
  c = np.stack([np.asarray(counts[m]) for m in TOKENS], -1)
  assert c.min() >= 0 and np.all(c <= np.array(list(TOKENS.values())))
  # Capped rows are the only ones that may fall short; 20 <= 24, 32 so at most image caps.
  full = c[:, 0] < 16
  assert np.all(c[full].sum(-1) == 20)
  assert np.all(c.sum(-1) <= 20)


def test_shares_are_dirichlet():
  n = 4000
  tokens = {'a': 100, 'b': 100, 'c': 100}
  c = np.stack([np.asarray(v) for v in
                split_visible_budget(jax.random.key(1), tokens, 99, 1.0, n).values()], -1) / 99
  # Dirichlet(1,1,1): mean 1/3, variance (1 * 2) / (9 * 4) = 1/18 per share.
  np.testing.assert_allclose(c.mean(0), 1 / 3, atol=0.02)
  np.testing.assert_allclose(c.var(0), 1 / 18, atol=0.01)
  # A large alpha splits almost evenly.
  even = np.stack([np.asarray(v) for v in
                   split_visible_budget(jax.random.key(2), tokens, 99, 1e4, 64).values()], -1)
  assert np.abs(even - 33).max() <= 2


def test_visible_mask_shows_exactly_the_count():
  counts = np.array([0, 3, 16, 7])
  m = np.asarray(visible_mask(jax.random.key(3), counts, 16))
  np.testing.assert_array_equal(m.sum(-1), counts)
  assert set(np.unique(m)) <= {0, 1}


def test_budget_out_of_range_is_refused():
  with pytest.raises(ValueError, match='budget'):
    split_visible_budget(jax.random.key(0), TOKENS, 100, 1.0, 2)
