"""Time-series patching and embedding against numpy, and its host windows."""

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mmjax.data import transforms
from mmjax.models import time_series as ts


def _embed(patch=4):
  cfg = ml_collections.ConfigDict(dict(
      width=8, time_series=dict(patch_steps=patch, max_patches=6, max_channels=3)))
  return ts.TimeSeriesEmbed(cfg, rngs=nnx.Rngs(0), dtype=jnp.float32)


def test_patches_and_tokens_match_numpy():
  x = np.random.default_rng(0).normal(size=(2, 12, 3)).astype(np.float32)
  got = np.asarray(ts.patchify(jnp.asarray(x), 4))
  # channel c, patch j = steps 4j..4j+3 of channel c, at token c * 3 + j
  for b in range(2):
    for c in range(3):
      for j in range(3):
        np.testing.assert_array_equal(got[b, c * 3 + j], x[b, 4 * j:4 * j + 4, c])
  embed = _embed()
  mask = np.ones((2, 12), np.int32)
  mask[1, 8:] = 0                                   # the second series ends after 8 steps
  tokens, tmask = embed(jnp.asarray(x), jnp.asarray(mask))
  k, bias = np.asarray(embed.proj.kernel[...]), np.asarray(embed.proj.bias[...])
  pos_t, pos_c = np.asarray(embed.pos_t[...]), np.asarray(embed.pos_c[...])
  want = np.stack([[x[b, 4 * j:4 * j + 4, c] @ k + bias + pos_c[c] + pos_t[j]
                    for c in range(3) for j in range(3)] for b in range(2)])
  np.testing.assert_allclose(np.asarray(tokens), want, rtol=1e-5, atol=1e-5)
  assert np.asarray(tmask).tolist() == [[1] * 9, [1, 1, 0] * 3]


def test_length_not_a_multiple_is_refused():
  import pytest
  with pytest.raises(ValueError, match='patch_steps=4'):
    _embed()(jnp.zeros((1, 10, 2)))


def test_host_windows():
  series = np.empty(2, object)
  series[0] = np.arange(20, dtype=np.float32).reshape(10, 2)
  series[1] = np.arange(6, dtype=np.float32).reshape(3, 2)
  x, mask = transforms.series_windows(series, 4, 3, None)
  # evaluation: the central window (start 3 of 10), padded; a missing channel is zero
  np.testing.assert_array_equal(x[0, :, :2], series[0][3:7])
  assert np.all(x[..., 2] == 0)
  np.testing.assert_array_equal(x[1, :3, :2], series[1])
  assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
  tx, _ = transforms.series_windows(series, 4, 2, np.random.default_rng(0))
  start = int(tx[0, 0, 0]) // 2                    # a contiguous window of the series
  np.testing.assert_array_equal(tx[0], series[0][start:start + 4])
