"""Types and ranges of config values, checked before anything is written or compiled.

One table: a key (`*` matches every entry of a group such as `config.tasks`), what its value
must be, and a test. A key a config does not have is not checked (configs may leave groups
out); a wrong value is a ConfigError of one sentence naming the key, the value and the fix.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from mmjax.config.defaults import setting
from mmjax.core import modalities

# Kernel switches (mmjax/kernels/select.py; a test keeps these equal to the kernels' own).
from mmjax.core.choices import (ATTENTION_IMPLS, COMPUTE_DTYPES, ENCODER_POOLINGS,
                                ENCODER_SHARINGS, RAGGED_MATMUL_IMPLS, SCAN_IMPLS,
                                TOWER_POOLINGS)


def _number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _sizes(v) -> bool:
  """An input size: None, a positive integer, or a tuple of them (several resolutions)."""
  values = v if isinstance(v, (tuple, list)) else (v,)
  return len(values) > 0 and all(x is None or (_int(x) and x > 0) for x in values)


def _one_of(*options) -> tuple[str, Callable[[Any], bool]]:
  return f'one of {", ".join(repr(o) for o in options)}', lambda v: v in options


POSITIVE_INT = ('a positive integer', lambda v: _int(v) and v > 0)
NONNEGATIVE_INT = ('an integer >= 0', lambda v: _int(v) and v >= 0)
POSITIVE = ('a number > 0', lambda v: _number(v) and v > 0)
NONNEGATIVE = ('a number >= 0', lambda v: _number(v) and v >= 0)
PROBABILITY = ('a probability in [0, 1]', lambda v: _number(v) and 0 <= v <= 1)
BELOW_ONE = ('a number in [0, 1)', lambda v: _number(v) and 0 <= v < 1)
SIZES = ('a positive integer, a tuple of them, or None', _sizes)
CROP = ('(min, max) with 0 < min <= max <= 1', lambda v: isinstance(v, (tuple, list)) and len(
    v) == 2 and all(_number(x) for x in v) and 0 < v[0] <= v[1] <= 1)
STEPS = ('a tuple of positive step numbers', lambda v: isinstance(v, (tuple, list)) and all(
    _int(x) and x > 0 for x in v))

_MODEL_INTS = ('num_layers', 'width', 'num_heads', 'mlp_dim', 'embed_dim', 'patch_size',
               'tubelet_frames', 'max_grid', 'max_frames', 'max_audio_tokens',
               'max_text_length', 'vocab_size')
_AUDIO_INTS = ('sample_rate', 'window', 'hop', 'num_mels', 'patch_frames', 'patch_mels',
               'patch_samples')
_INPUT_SIZES = tuple(f for f, _ in modalities.resolution_fields())  # core/modalities.py

RULES = (
    [('seed', ('an integer', _int)),
     ('total_steps', POSITIVE_INT), ('log_every', POSITIVE_INT),
     ('checkpoint_every', POSITIVE_INT), ('keep_checkpoints', POSITIVE_INT),
     ('eval_every', NONNEGATIVE_INT),
     ('optimizer.name', _one_of('adamw')),
     ('optimizer.learning_rate', POSITIVE), ('optimizer.warmup_steps', NONNEGATIVE_INT),
     ('optimizer.decay_steps', POSITIVE_INT), ('optimizer.end_learning_rate_factor', PROBABILITY),
     ('optimizer.b1', BELOW_ONE), ('optimizer.b2', BELOW_ONE), ('optimizer.eps', POSITIVE),
     ('optimizer.weight_decay', NONNEGATIVE), ('optimizer.grad_clip_norm', NONNEGATIVE),
     ('agd.mode', _one_of('weighted', 'round_robin', 'mixed')),
     ('model.dtype', _one_of(*COMPUTE_DTYPES)),
     ('model.pooling', _one_of(*ENCODER_POOLINGS)),
     ('model.encoder_sharing', _one_of(*ENCODER_SHARINGS)),
     ('model.attention_impl', _one_of(*ATTENTION_IMPLS)),
     ('model.moe.impl', _one_of(*RAGGED_MATMUL_IMPLS)),
     ('model.moe.num_experts', NONNEGATIVE_INT), ('model.moe.jitter', PROBABILITY),
     ('model.moe.load_balancing_weight', NONNEGATIVE), ('model.moe.z_loss_weight', NONNEGATIVE),
     ('model.moe.dropless_capacity_factor', NONNEGATIVE),
     ('model.temperature.init', POSITIVE), ('model.temperature.min', POSITIVE),
     ('model.temperature.max', POSITIVE),
     ('model.audio.features', _one_of('waveform', 'log_mel')),
     ('tasks.*.batch_size', POSITIVE_INT), ('tasks.*.weight', NONNEGATIVE),
     ('tasks.*.interval', POSITIVE_INT), ('tasks.*.drop_token', PROBABILITY),
     ('tasks.*.text_instances', POSITIVE_INT), ('tasks.*.num_classes', NONNEGATIVE_INT),
     ('evaluation.datasets.*.batch_size', POSITIVE_INT),
     ('evaluation.datasets.*.num_clips', POSITIVE_INT),
     ('data.threads', NONNEGATIVE_INT), ('data.prefetch', NONNEGATIVE_INT),
     ('data.cache_mb', NONNEGATIVE), ('data.frame_stride', POSITIVE_INT),
     ('data.crop_scale', CROP),
     ('faults.max_nonfinite_in_row', NONNEGATIVE_INT),
     ('faults.watchdog_seconds', NONNEGATIVE), ('faults.inject_nan_at_steps', STEPS),
     # Mamba / Mixture-of-Mamba layers and MAELRE token merging
     ('model.layer_types', ("a tuple of 'attention' and 'mamba'", lambda v: isinstance(
         v, (tuple, list)) and all(x in ('attention', 'mamba') for x in v))),
     ('model.mamba.state', POSITIVE_INT), ('model.mamba.expand', POSITIVE_INT),
     ('model.mamba.dt_rank', NONNEGATIVE_INT), ('model.mamba.conv', POSITIVE_INT),
     ('model.mamba.chunk', NONNEGATIVE_INT), ('model.mamba.impl', _one_of(*SCAN_IMPLS)),
     ('model.maelre.merge_after', ('a tuple of layer numbers', lambda v: isinstance(
         v, (tuple, list)) and all(_int(x) and x >= 0 for x in v))),
     ('model.maelre.merge_ratio', BELOW_ONE), ('model.maelre.linear_above', NONNEGATIVE_INT)]
    + [(f'model.{k}', POSITIVE_INT) for k in _MODEL_INTS]
    + [(f'model.audio.{k}', POSITIVE_INT) for k in _AUDIO_INTS]
    + [(f'model.{k}', POSITIVE_INT) for k, _ in modalities.model_keys() if k not in _MODEL_INTS]
    + [(f'model.{m.name}.{k}', POSITIVE_INT) for m in modalities.all_records()
       for k, v in m.options if isinstance(v, int) and not isinstance(v, bool)]
    + [(f'tasks.*.{k}', SIZES) for k in _INPUT_SIZES]
    + [(f'evaluation.datasets.*.{k}', SIZES) for k in _INPUT_SIZES])
# Published-model options (mmjax/models/towers.py).
RULES += [('model.towers.*.pooling', _one_of('', *TOWER_POOLINGS)),
          ('model.towers.*.width', NONNEGATIVE_INT), ('model.towers.*.num_layers', NONNEGATIVE_INT),
          ('model.towers.*.num_heads', NONNEGATIVE_INT),
          ('model.towers.*.mlp_dim', NONNEGATIVE_INT),
          ('model.activation', _one_of('gelu_tanh', 'gelu', 'quick_gelu')),
          ('model.norm_eps', POSITIVE), ('model.pos_embed', _one_of('factorized', 'full')),
          ('model.contrast_loss', _one_of('softmax', 'sigmoid'))]


def _values(config, pattern: str):
  """(dotted key, value) of every key matching `pattern` that the config has."""
  nodes = [('', config)]
  for part in pattern.split('.'):
    found = []
    for prefix, node in nodes:
      if not hasattr(node, 'keys'):
        continue
      keys = sorted(node.keys()) if part == '*' else ([part] if part in node else [])
      found += [(f'{prefix}{k}.', node[k]) for k in keys]
    nodes = found
  return [(prefix[:-1], value) for prefix, value in nodes]


def check_values(config, error: type[Exception]) -> None:
  """Raises `error` (one sentence) for the first value of the wrong type or out of range."""
  for pattern, (want, ok) in RULES:
    for key, value in _values(config, pattern):
      if not ok(value):
        raise error(f'config.{key} must be {want}, got {value!r}: change it in the config file '
                    f'or with --config.{key}=VALUE.')
  check_combinations(config, error)
  t = config.get('model', {}).get('temperature', None) if hasattr(config, 'get') else None
  if t is not None and not t.min <= t.init <= t.max:
    raise error(f'config.model.temperature must have min <= init <= max, got min={t.min}, '
                f'init={t.init}, max={t.max}: change one of them.')


# -- Combinations the model cannot honour (refused before anything compiles) -----------------


def check_combinations(config, error: type[Exception]) -> None:
  """Raises `error` (one sentence) for options that would silently do nothing or break:
  DropToken or Mixture-of-Transformers with routed attention, MoT with scan_layers or
  grouped-query k/v, kv_heads that do not divide the heads, a head dim cuDNN cannot take."""
  m = config.get('model', None) if hasattr(config, 'get') else None
  if m is None or not hasattr(m, 'get'):
    return
  ra = m.get('routed_attention', None)
  routed = tuple(setting(ra, 'model.routed_attention.layers') or ()) if ra is not None else ()
  moe = m.get('moe', None)
  mot = bool(moe is not None and setting(moe, 'model.moe.mixture_of_transformers'))
  tasks = config.get('tasks', None) or {}
  if routed:
    for name in sorted(tasks.keys()):
      if float(setting(tasks[name], 'tasks.*.drop_token') or 0.0) > 0:
        raise error(f'config.tasks.{name}.drop_token drops tokens out of the routed-attention '
                    'windows of model.routed_attention.layers: set drop_token=0 or '
                    'routed_attention.layers=().')
    if mot:
      raise error('config.model.moe.mixture_of_transformers does not route attention: set '
                  'model.routed_attention.layers=() with it.')
  if mot and setting(m, 'model.scan_layers'):
    raise error('config.model.scan_layers does not apply to the Mixture-of-Transformers encoder: '
                'set scan_layers=False or moe.mixture_of_transformers=False.')
  heads, width = setting(m, 'model.num_heads'), setting(m, 'model.width')
  kv = setting(m, 'model.kv_heads')
  if kv is not None:
    if not _int(kv) or kv < 1 or (_int(heads) and heads % kv):
      raise error(f'config.model.kv_heads must be a positive divisor of num_heads={heads} (or '
                  f'None), got {kv!r}.')
    if mot and kv != heads:
      raise error('config.model.kv_heads (grouped-query attention) is not implemented for the '
                  'Mixture-of-Transformers encoder: set kv_heads=None.')
  if (m.get('attention_impl', None) == 'cudnn' and _int(heads) and _int(width) and heads > 0
      and width % heads == 0 and not (width // heads) % 8 == 0 < width // heads <= 128):
    raise error(f"config.model.attention_impl='cudnn' needs a head dim (width / num_heads) that "
                f'is a multiple of 8 and at most 128, got {width // heads}: use '
                "attention_impl='auto' or 'xla', or change num_heads.")
