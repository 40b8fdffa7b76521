"""Checks of `config.model.moe` (router kind, top_k, capacity, routing knobs, layer placement,
expert mesh axis), run before a MoE model is built so a bad setting fails in one sentence."""

from __future__ import annotations

from mmjax.config import ConfigError
from mmjax.models.moe.expert_exchange import EXCHANGES
from mmjax.config.defaults import setting

ROUTERS = ('tokens_choose', 'experts_choose', 'dropless')
COMM_DTYPES = ('', 'float32', 'bfloat16', 'float16')
# Load-balancing loss at perfect balance: 'per_slot' 1.0 (every top-k choice is one slot),
# 'switch' top_k (Switch Transformer / MaxText convention: the same weight pushes k times harder).
LB_SCALES = ('per_slot', 'switch')


def moe_layer_indices(cfg) -> tuple[int, ...]:
  """Which blocks are MoE: `moe.last_n` last blocks, or every `moe.every`-th block (1-based)."""
  moe = cfg.get('moe', None)
  if moe is None or not setting(moe, 'model.moe.num_experts'):
    return ()
  depth = cfg.num_layers
  last_n, every = int(setting(moe, 'model.moe.last_n')), int(setting(moe, 'model.moe.every'))
  if last_n and every:
    raise ValueError('set one of config.model.moe.last_n and config.model.moe.every, not both.')
  if last_n > depth:
    raise ValueError(f'config.model.moe.last_n={last_n} MoE layers exceed the encoder depth '
                     f'num_layers={depth}.')
  if every > depth:
    raise ValueError(f'config.model.moe.every={every} exceeds the encoder depth {depth}.')
  if last_n:
    return tuple(range(depth - last_n, depth))
  if every:
    return tuple(i for i in range(depth) if (i + 1) % every == 0)
  raise ValueError('config.model.moe.num_experts > 0 needs moe.last_n or moe.every to place '
                   'the MoE layers.')


class MoeConfigError(ConfigError):
  """A bad `config.model.moe` setting; one sentence naming it and the fix."""


def check_moe_config(model_cfg, mesh_shape: dict | None = None) -> None:
  """Raises MoeConfigError for a MoE setting that cannot work; `mesh_shape` (e.g.
  `dict(mesh.shape)`) adds the check that the expert mesh axis divides the expert count."""
  moe = model_cfg.get('moe', None)
  if moe is None or not setting(moe, 'model.moe.num_experts'):
    return
  experts, top_k = int(moe.num_experts), int(moe.top_k)
  if moe.router not in ROUTERS:
    raise MoeConfigError(f'config.model.moe.router is {moe.router!r}; choose one of {ROUTERS}.')
  if not 1 <= top_k <= experts:
    raise MoeConfigError(f'config.model.moe.top_k={top_k} must be between 1 and '
                         f'num_experts={experts}.')
  if moe.router != 'dropless' and not moe.capacity_factor > 0:
    raise MoeConfigError(f'config.model.moe.capacity_factor={moe.capacity_factor} must be > 0.')
  for knob in ('group_size', 'min_capacity'):
    if int(moe.get(knob, 0)) < 0:
      raise MoeConfigError(f'config.model.moe.{knob}={moe.get(knob)} must be >= 0 (0 = off).')
  if setting(moe, 'model.moe.comm_dtype') not in COMM_DTYPES:
    raise MoeConfigError(f'config.model.moe.comm_dtype is {moe.comm_dtype!r}; choose one of '
                         f'{COMM_DTYPES} (empty = the model dtype).')
  if setting(moe, 'model.moe.load_balancing_scale') not in LB_SCALES:
    raise MoeConfigError(f'config.model.moe.load_balancing_scale is '
                         f'{moe.load_balancing_scale!r}; choose one of {LB_SCALES}.')
  if setting(moe, 'model.moe.exchange') not in EXCHANGES:
    raise MoeConfigError(f'config.model.moe.exchange is {moe.exchange!r}; choose one of '
                         f'{EXCHANGES}.')
  try:
    moe_layer_indices(model_cfg)
  except ConfigError:
    raise
  except ValueError as e:
    raise MoeConfigError(str(e)) from None
  check_expert_axis(experts, int((mesh_shape or {}).get('expert', 1)))


def check_expert_axis(experts: int, expert_axis: int) -> None:
  """MoeConfigError unless the expert mesh axis (size `expert_axis`) divides `experts`."""
  if expert_axis > 1 and experts % expert_axis:
    raise MoeConfigError(f'config.model.moe.num_experts={experts} is not divisible by the expert '
                         f'mesh axis of size {expert_axis}: make config.mesh.expert divide it.')
