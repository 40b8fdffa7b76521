"""The modality table: one `Modality` record per input kind, the one place that lists them.

A record says everything the stages need to know about a modality without importing them:
its resolution fields (per-task input sizes, e.g. `image_size`) with their defaults, the arrays
of its batch (name, per-example shape in resolution fields, loader dtype, exported dtype), its
model-config keys (token budgets such as `max_audio_tokens`, and a sub-config of its own
options), how evaluation clips it, which dataset feature kinds feed it, which user files
`tools.convert_data --modality=NAME` reads, and, as `'module:attribute'` names resolved on first
use, the code that registers against it: its embedding (models), its host transform (data) and
its patch target (models, for masked modeling; '' = not reconstructable).

Adding a modality: one `register(Modality(...))` below, an embedding module under
`mmjax/models/`, and (unless an existing one fits) a host transform under `mmjax/data/`. No JAX
here: every stage may import this file.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any


@dataclasses.dataclass(frozen=True)
class Array:
  """One array a modality puts in the batch: `[batch, *shape]`; a `str` dimension is a
  resolution field, an int a fixed size. `dtype` is what the loader sends, `export_dtype` what
  the exported functions take (pixels and waveforms normalised to float32)."""
  name: str
  shape: tuple
  dtype: str
  export_dtype: str
  description: str
  range: tuple | None = None


@dataclasses.dataclass(frozen=True)
class Modality:
  """See the module docstring. `arrays[0]` is the modality's input; others are masks."""
  name: str
  resolution: tuple[tuple[str, Any], ...]   # (field, default) of the per-task input sizes
  arrays: tuple[Array, ...]
  embedding: str                            # 'module:Class' of its nnx embedding
  transform: str                            # 'module:function' of its host transform
  feature_kinds: tuple[str, ...]            # dataset feature kinds that can feed it
  model_keys: tuple[tuple[str, Any], ...] = ()   # config.model keys (token budgets) + defaults
  options: tuple[tuple[str, Any], ...] = ()      # config.model.<name> sub-config + defaults
  clipped: bool = False                     # eval batches carry a clip axis when num_clips > 1
  patch_target: str = ''                    # 'module:object' for masked modeling ('' = none)
  file_formats: tuple[str, ...] = ()        # user files tools.convert_data reads for it
  preprocessing: tuple[tuple[str, Any], ...] = ()  # how evaluation prepares it (export doc)
  region: str = 'block'                     # routed attention: 'grid' (windows) | 'block'
  prompts: tuple[str, ...] = ()             # zero-shot templates of mmjax_digits ('{}' = class)

  @property
  def input(self) -> Array:
    return self.arrays[0]

  @property
  def mask(self) -> str | None:
    """The name of its padding-mask array, or None when every token is real."""
    return self.arrays[1].name if len(self.arrays) > 1 else None

  @property
  def fields(self) -> tuple[str, ...]:
    return tuple(f for f, _ in self.resolution)


_TABLE: dict[str, Modality] = {}


def register(modality: Modality) -> Modality:
  """Adds `modality` to the table (the name must be new; a resolution field
  another modality already has, such as video's `image_size`, must keep its default)."""
  if modality.name in _TABLE:
    raise ValueError(f'modality {modality.name!r} is registered twice.')
  known = dict(resolution_fields())
  shared = [f for f, d in modality.resolution if f in known and known[f] != d]
  if shared:
    raise ValueError(f'modality {modality.name!r} redefines the default of {shared}.')
  _TABLE[modality.name] = modality
  return modality


def get(name: str) -> Modality:
  if name not in _TABLE:
    raise ValueError(f'unknown modality {name!r}; known: {", ".join(_TABLE)}.')
  return _TABLE[name]


def names() -> tuple[str, ...]:
  """Every modality, in registration order but text last (the order pair names and sorting
  use: 'image_text', 'point_cloud_text')."""
  return tuple(sorted(_TABLE, key=lambda n: n == 'text'))


def all_records() -> tuple[Modality, ...]:
  return tuple(_TABLE.values())


def resolution_fields() -> tuple[tuple[str, Any], ...]:
  """Every resolution field (field, default), first use first, each once."""
  out: dict[str, Any] = {}
  for m in _TABLE.values():
    for field, default in m.resolution:
      out.setdefault(field, default)
  return tuple(out.items())


def model_keys() -> tuple[tuple[str, Any], ...]:
  return tuple(kv for m in _TABLE.values() for kv in m.model_keys)


def array_specs(name: str, sizes, *, export: bool = False) -> dict[str, tuple[tuple, str]]:
  """`{array name: (per-example shape, dtype name)}` of modality `name`; `sizes` is a
  Resolution or a dict of resolution fields."""
  get_size = (sizes.get if isinstance(sizes, dict) else lambda f: getattr(sizes, f, None))
  out = {}
  for a in get(name).arrays:
    shape = tuple(get_size(d) if isinstance(d, str) else d for d in a.shape)
    out[a.name] = (shape, a.export_dtype if export else a.dtype)
  return out


def load(ref: str):
  """'package.module:attribute' -> the attribute (imported on first use)."""
  module, _, attribute = ref.partition(':')
  return getattr(importlib.import_module(module), attribute)


_PIXELS = 'RGB {}, channels last, float32 in [-1, 1] (uint8 x / 127.5 - 1)'

register(Modality(
    name='image', resolution=(('image_size', None),),
    arrays=(Array('image', ('image_size', 'image_size', 3), 'uint8', 'float32',
                  _PIXELS.format('pixels'), (-1.0, 1.0)),),
    embedding='mmjax.models.embeddings:ImageEmbed', transform='mmjax.data.batching:image',
    feature_kinds=('image',), model_keys=(('max_grid', 32),),
    patch_target='mmjax.models.patch_targets:IMAGE', region='grid',
    preprocessing=(('size', 'image_size'),)))
register(Modality(
    name='video', resolution=(('image_size', None), ('num_frames', None)),
    arrays=(Array('video', ('num_frames', 'image_size', 'image_size', 3), 'uint8', 'float32',
                  _PIXELS.format('frames'), (-1.0, 1.0)),),
    embedding='mmjax.models.embeddings:VideoEmbed', transform='mmjax.data.batching:video',
    feature_kinds=('video',), model_keys=(('max_frames', 16),), clipped=True,
    patch_target='mmjax.models.patch_targets:VIDEO', region='grid',
    preprocessing=(('frames', 'num_frames'), ('size', 'image_size'))))
register(Modality(
    name='audio', resolution=(('audio_samples', None),),
    arrays=(Array('audio', ('audio_samples',), 'int16', 'float32',
                  'mono waveform, float32 at its stored scale (int16 / 32768)'),),
    embedding='mmjax.models.embeddings:AudioEmbed', transform='mmjax.data.batching:audio',
    feature_kinds=('audio',), model_keys=(('max_audio_tokens', 256),), clipped=True,
    patch_target='mmjax.models.patch_targets:AUDIO',
    preprocessing=(('samples', 'audio_samples'),)))
register(Modality(
    name='text', resolution=(('text_length', None),),
    arrays=(Array('text', ('text_length',), 'int32', 'int32',
                  'SentencePiece token ids, 0-padded to the length'),
            Array('text_mask', ('text_length',), 'int32', 'int32',
                  '1 on real tokens, 0 on padding', (0, 1))),
    embedding='mmjax.models.embeddings:TextEmbed', transform='mmjax.data.batching:text',
    feature_kinds=('text',), model_keys=(('max_text_length', 64),),
    preprocessing=(('length', 'text_length'),)))
register(Modality(
    name='point_cloud', resolution=(('num_points', None),),
    arrays=(Array('point_cloud', ('num_points', 3), 'float32', 'float32',
                  'an unordered point set, x y z per point (2-D sets: z = 0), any scale'),
            Array('point_cloud_mask', ('num_points',), 'int32', 'int32',
                  '1 on real points, 0 on padding', (0, 1))),
    embedding='mmjax.models.point_cloud:PointCloudEmbed',
    transform='mmjax.data.batching:point_cloud', feature_kinds=('tensor',),
    options=(('groups', 16), ('group_size', 8), ('hidden', 64)),
    file_formats=('npy', 'ply', 'csv'),
    preprocessing=(('points', 'num_points'),
                   ('sampling', 'evenly spaced points when a set has more than points, '
                                'zero-padded and masked when it has fewer')),
    prompts=('a point cloud of the digit {}.', 'a scatter of points shaped like a {}.',
             'dots tracing the number {}.', 'a sparse set of points forming a {}.',
             'the strokes of a {} as points.', 'a dotted outline of the numeral {}.')))
register(Modality(
    name='time_series', resolution=(('series_length', None), ('series_channels', None)),
    arrays=(Array('time_series', ('series_length', 'series_channels'), 'float32', 'float32',
                  'a multichannel sequence [steps, channels] at its stored scale'),
            Array('time_series_mask', ('series_length',), 'int32', 'int32',
                  '1 on real steps, 0 on padding', (0, 1))),
    embedding='mmjax.models.time_series:TimeSeriesEmbed',
    transform='mmjax.data.transforms:time_series', feature_kinds=('tensor',),
    options=(('patch_steps', 8), ('max_patches', 32), ('max_channels', 8)),
    patch_target='mmjax.models.time_series:PATCH_TARGET', file_formats=('npy', 'csv'),
    preprocessing=(('steps', 'series_length'), ('channels', 'series_channels'),
                   ('window', 'the central window of steps, zero-padded and masked past the '
                              'end')),
    prompts=('a time series of someone writing the digit {}.', 'the pen path of a {}.',
             'a sensor recording of writing the number {}.', 'pen movements drawing a {}.',
             'a trajectory tracing the numeral {}.', 'a signal of a hand writing {}.')))
