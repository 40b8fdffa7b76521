"""Lets TFDS video and audio datasets (ucf101, kinetics, speech_commands, ...) load without TF.

TFDS 4.9's `tfds.features.Video.__init__` and its audio decoder's constructor call
`tf.dtypes.as_dtype` only to normalise a dtype, so reading a prepared video or audio dataset's
`features.json` needs TF although nothing else does (frames are images, decoded by the loader;
audio is a plain integer tensor). `patch_media_features()` swaps in the same constructors with
NumPy dtypes, once, and only when TF is not installed; it also sets Video's `_use_colormap`,
which `to_json_content` reads but the original never sets, and names dtypes from NumPy in both
features' `to_json_content` (used when mmjax writes a dataset).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.features import audio_feature, feature as feature_lib
from tensorflow_datasets.core.proto import feature_pb2

_PATCHED = False


def _video_init(self, shape=None, encoding_format='png', ffmpeg_extra_args=(),
                use_colormap=False, dtype=np.uint8, doc=None):
  """`tfds.features.Video.__init__` with `dtype` a NumPy dtype (uint8 or uint16)."""
  dtype = np.dtype(getattr(dtype, 'as_numpy_dtype', dtype))
  frame_shape = None
  if shape:
    shape = tuple(shape)
    if len(shape) != 4:
      raise ValueError('Video shape should be of rank 4')
    frame_shape = shape[1:]
  self._encoding_format = encoding_format
  self._extra_ffmpeg_args = list(ffmpeg_extra_args or [])
  self._use_colormap = use_colormap
  tfds.features.Sequence.__init__(
      self, tfds.features.Image(shape=frame_shape, dtype=dtype, encoding_format=encoding_format,
                                use_colormap=use_colormap),
      length=shape[0] if shape else None, doc=doc)


def _video_json(self):
  """`tfds.features.Video.to_json_content` with the dtype named from NumPy."""
  return feature_pb2.VideoFeature(
      shape=feature_lib.to_shape_proto(self.shape), dtype=np.dtype(self.np_dtype).name,
      encoding_format=self._encoding_format, use_colormap=self._use_colormap,
      ffmpeg_extra_args=self._extra_ffmpeg_args)


def _audio_decoder_init(self, file_format, np_dtype, shape):
  """`_AudioDecoder.__init__` keeping the dtype as NumPy's."""
  self._file_format = file_format
  self._np_dtype = np_dtype
  self._dtype = np.dtype(np_dtype)
  self._shape = shape
  self._channels = shape[1] if len(shape) > 1 else 1


def _audio_json(self):
  """`tfds.features.Audio.to_json_content` with the dtype named from NumPy."""
  return feature_pb2.AudioFeature(
      shape=feature_lib.to_shape_proto(self.shape), dtype=np.dtype(self.np_dtype).name,
      file_format=self._file_format, sample_rate=self._sample_rate,
      encoding=self._encoding.name, lazy_decode=self._lazy_decode)


def patch_media_features() -> None:
  global _PATCHED
  if not _PATCHED and importlib.util.find_spec('tensorflow') is None:
    tfds.features.Video.__init__ = _video_init
    tfds.features.Video.to_json_content = _video_json
    audio_feature._AudioDecoder.__init__ = _audio_decoder_init  # pylint: disable=protected-access
    tfds.features.Audio.to_json_content = _audio_json
  _PATCHED = True
