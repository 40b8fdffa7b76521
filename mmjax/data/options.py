"""The config keys the data pipeline reads, in one place, with their defaults.

  config.data_dir          TFDS data dir; None/'' = $TFDS_DATA_DIR or TFDS's default
  config.text.tokenizer    '' = the SentencePiece model stored with the dataset, else a .model path
  config.text.lowercase    lowercase every text before tokenising (train and eval alike), True
  config.data.threads      loader threads per iterator (0 = in the caller's thread), 2
  config.data.prefetch     batches buffered ahead per iterator, 4 (scaled per task by its share
                           of the AGD sampler's draws)
  config.data.workers      loader worker processes per iterator (0 = threads only), 0
  config.data.cache_mb     splits up to this size on disk are held in memory, their images
                           decoded once when they fit this size decoded too, 1024
  config.data.crop_scale   random-resized-crop area range (min, max), (0.7, 1.0)
  config.data.flip         random horizontal flips in training, False
  config.data.frame_stride video frame stride, 1
  config.data.eval_resize  '' (central square, antialiased triangle filter) or a published
                           model's recipe: bicubic | bilinear shorter side + centre crop

Every key is optional; a missing key (or a config without `data`/`text`) takes the default.
"""

from __future__ import annotations

import dataclasses

from mmjax.data import recipe_resize
from mmjax.data.errors import DataError


def config_get(config, path: str, default=None):
  """`config.a.b` for `path='a.b'`, or `default` when any part is missing or None."""
  node = config
  for part in path.split('.'):
    if node is None:
      return default
    node = node.get(part, None) if hasattr(node, 'get') else getattr(node, part, None)
  return default if node is None else node


@dataclasses.dataclass(frozen=True)
class DataOptions:
  data_dir: str | None = None
  tokenizer: str = ''
  lowercase: bool = True
  threads: int = 2
  prefetch: int = 4
  workers: int = 0
  cache_mb: float = 1024.0
  crop_scale: tuple[float, float] = (0.7, 1.0)
  flip: bool = False
  frame_stride: int = 1
  eval_resize: str = ''   # a published model's eval resize (recipe_resize.py); '' = mmjax's

  @classmethod
  def from_config(cls, config) -> 'DataOptions':
    d = cls()
    crop = tuple(float(v) for v in config_get(config, 'data.crop_scale', d.crop_scale))
    if len(crop) != 2 or not 0 < crop[0] <= crop[1] <= 1:
      raise DataError(f'config.data.crop_scale must be (min, max) with 0 < min <= max <= 1, '
                       f'got {crop}.')
    options = cls(
        data_dir=config_get(config, 'data_dir', None) or None,
        tokenizer=str(config_get(config, 'text.tokenizer', d.tokenizer)),
        lowercase=bool(config_get(config, 'text.lowercase', d.lowercase)),
        threads=int(config_get(config, 'data.threads', d.threads)),
        prefetch=int(config_get(config, 'data.prefetch', d.prefetch)),
        workers=int(config_get(config, 'data.workers', d.workers)),
        cache_mb=float(config_get(config, 'data.cache_mb', d.cache_mb)),
        crop_scale=crop,
        flip=bool(config_get(config, 'data.flip', d.flip)),
        frame_stride=int(config_get(config, 'data.frame_stride', d.frame_stride)),
        eval_resize=recipe_resize.check(str(config_get(config, 'data.eval_resize', ''))))
    if min(options.threads, options.prefetch, options.workers) < 0 or options.frame_stride < 1:
      raise DataError('config.data.threads, .prefetch and .workers must be >= 0 and '
                      f'.frame_stride >= 1, got {options.threads}, {options.prefetch}, '
                      f'{options.workers}, {options.frame_stride}.')
    return options
