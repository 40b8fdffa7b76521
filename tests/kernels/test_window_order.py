"""window_order: consecutive blocks of reordered patch tokens are exactly the spatial windows."""

import itertools

import numpy as np
import pytest

from mmjax.kernels import window_order, window_order_inverse


@pytest.mark.parametrize('grid,window', [((4, 6), (2, 3)), ((2, 4, 6), (1, 2, 3)),
                                         ((4, 4, 4), (2, 2, 2))])
def test_each_block_is_one_window(grid, window):
  coords = np.array(list(itertools.product(*(range(g) for g in grid))))   # raster order
  order = window_order(grid, window)
  assert sorted(order.tolist()) == list(range(len(coords)))
  block = int(np.prod(window))
  windowed = coords[order].reshape(-1, block, len(grid))
  starts = [range(0, g, w) for g, w in zip(grid, window)]
  for n, corner in enumerate(itertools.product(*starts)):   # windows in raster order
    inside = [tuple(np.add(corner, o)) for o in itertools.product(*(range(w) for w in window))]
    assert [tuple(c) for c in windowed[n]] == inside        # raster order inside the window


def test_inverse_restores_raster_order():
  tokens = np.random.default_rng(0).standard_normal((2, 48, 3))
  windowed = tokens[:, window_order((4, 12), (2, 4))]
  np.testing.assert_array_equal(windowed[:, window_order_inverse((4, 12), (2, 4))], tokens)


@pytest.mark.parametrize('grid,window', [((4, 6), (3, 3)), ((4, 6), (2,)), ((8,), (2,))])
def test_bad_windows_raise(grid, window):
  with pytest.raises(ValueError, match='window'):
    window_order(grid, window)
