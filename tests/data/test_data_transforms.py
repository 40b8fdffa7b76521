"""Vectorised host transforms against direct numpy expectations."""

import numpy as np
import pytest

from mmjax.data import transforms as T
from mmjax.data.order import GlobalOrder, HostRng


def test_full_box_resize_is_identity_and_flip_mirrors():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, 12, 12, 3), dtype=np.uint8)
  boxes = T.center_boxes([12] * 4, [12] * 4)
  out = T.crop_resize(images, boxes, 12)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, images)
  flipped = T.crop_resize(images, boxes, 12, flip=np.array([True, False, True, False]))
  np.testing.assert_array_equal(flipped[0], images[0, :, ::-1])
  np.testing.assert_array_equal(flipped[1], images[1])


def test_crop_takes_the_box_and_downsampling_averages():
  images = np.zeros((1, 16, 16, 1), np.uint8)
  images[0, 4:8, 8:12] = 255                       # a white square at rows 4-7, cols 8-11
  out = T.crop_resize(images, np.array([[4.0, 8.0, 4.0, 4.0]]), 4)
  np.testing.assert_array_equal(out, 255)  # the box is exactly the square
  stripes = np.tile(np.array([0, 255], np.uint8), 8)[None, None, :, None].repeat(16, 1)
  half = T.crop_resize(stripes, T.center_boxes([16], [16]), 4)
  np.testing.assert_allclose(half[:, :, 1:-1], 127.5, atol=3)  # antialiased: stripes -> grey
  np.testing.assert_allclose(half, 127.5, atol=13)              # edges see fewer stripes


def test_video_clips_share_one_crop_and_keep_frame_order():
  video = np.stack([np.full((8, 8, 3), 10 * t, np.uint8) for t in range(5)])[None]
  out = T.crop_resize(video, np.array([[1.0, 2.0, 5.0, 4.0]]), 6)
  assert out.shape == (1, 5, 6, 6, 3)
  np.testing.assert_array_equal(out[0, :, 0, 0, 0], np.arange(5) * 10)


def test_random_boxes_fit_inside_with_the_asked_area():
  rng = np.random.default_rng(1)
  boxes = T.random_crop_boxes(rng, np.full(500, 30), np.full(500, 40), scale=(0.5, 0.9))
  top, left, h, w = boxes.T
  assert np.all(top >= 0) and np.all(left >= 0)
  assert np.all(top + h <= 30 + 1e-9) and np.all(left + w <= 40 + 1e-9)
  area = h * w / (30 * 40)
  assert area.min() >= 0.5 - 1e-9 and area.max() <= 0.9 + 1e-9


def test_frames_and_audio_windows():
  starts = T.clip_starts(None, np.array([8, 3]), 4, num_clips=3)
  assert starts.tolist() == [[0, 2, 4], [0, 0, 0]]
  idx = T.frame_indices(np.array([8, 3]), 4, 2, np.array([1, 0]))
  assert idx.tolist() == [[1, 3, 5, 7], [0, 2, 2, 2]]  # short video repeats its last frame
  waves = np.arange(10, dtype=np.int16)[None].repeat(2, 0) * 3276
  out = T.crop_audio(waves, np.array([[0, 8], [4, 6]]), 4)
  assert out.dtype == np.int16                                      # sent to the device as is
  np.testing.assert_array_equal(out[0, 1], np.array([8, 9, 0, 0]) * 3276)  # zero-padded
  np.testing.assert_array_equal(out[1, 0], np.arange(4, 8) * 3276)
  floats = T.crop_audio(np.array([[0.5, -1.0, 1.0, 0.25]], np.float32), np.array([0]), 4)
  np.testing.assert_array_equal(floats[0], [16384, -32768, 32767, 8192])  # 1.0 clips
  rng = np.random.default_rng(0)
  random = T.clip_starts(rng, np.full(1000, 10), 4)
  assert random.min() == 0 and random.max() == 6


def test_ragged_columns_are_zero_padded():
  column = np.empty(2, object)
  column[:] = [np.ones((2, 3)), np.ones((3, 1))]
  out = T.stack_ragged(column)
  assert out.shape == (2, 3, 3) and out.sum() == 9


def test_global_order_is_the_same_for_any_host_count():
  order = GlobalOrder(num_examples=10, global_batch=4, seed=7)
  stream = np.concatenate([order(j) for j in range(5)])   # 20 = two epochs of 10
  epochs = stream.reshape(2, 10)
  for epoch in epochs:
    assert sorted(epoch.tolist()) == list(range(10))
  assert not np.array_equal(epochs[0], epochs[1])          # reshuffled between epochs
  for j in (0, 3, 1000):
    halves = [GlobalOrder(10, 4, 7, slot, 2)(j) for slot in range(2)]
    assert np.array_equal(np.concatenate(halves), order(j))


def test_host_rng_draws_the_global_batch_and_keeps_its_rows():
  full = np.random.default_rng(5).uniform(0, 1, (6, 3))
  rows = HostRng(np.random.default_rng(5), 6, slice(2, 4)).uniform(0, 1, (2, 3))
  np.testing.assert_array_equal(rows, full[2:4])
  with pytest.raises(ValueError, match='one per example'):
    HostRng(np.random.default_rng(5), 6, slice(2, 4)).random()