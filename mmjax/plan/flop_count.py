"""Matmul and convolution FLOPs of a traced function, read from its jaxpr: model and hardware.

XLA's cost analysis counts a loop body once, so a model that scans over layers looks L times
cheaper than it is. Counting the jaxpr instead multiplies `scan` bodies by their length, Pallas
kernels by their grid and `shard_map` bodies by their device count, so the count is the whole
program's (global, all devices). Element-wise work is ignored: matmuls (dense and ragged) and
convolutions are what MFU is measured against.

Two counts of one program:
- hardware FLOPs (`count_jaxpr` of the program as it compiles): a Pallas kernel counts as
  body x grid, which includes block padding and the forward recomputed in a flash-attention
  backward (HFU's numerator);
- model FLOPs (`count_model_flops`): the same program traced with every kernel replaced by its
  pure-JAX reference (`mmjax.kernels.backend.reference`), i.e. attention counted as its
  mathematics whichever kernel compiled (MFU's numerator).

The Mamba selective scan (`mmjax.kernels.selective_scan_reference`) is elementwise work that is
the scan's whole cost, so it is counted analytically where its jitted core appears: 9 FLOPs per
(example, step, channel, state) element forward (as the Mamba paper counts: discretise, update,
read out), twice that for its backward (found as the call that returns a gradient shaped like
A), instead of the small einsum inside it.
"""

import dataclasses
import math

import jax
from jax.extend import core

from mmjax.kernels import backend as kernel_backend
from mmjax.kernels.selective_scan_reference import SCAN_CORE_NAME

SCAN_FLOPS_PER_ELEMENT = 9.0


@dataclasses.dataclass(frozen=True)
class FlopCount:
  """Global FLOPs of one call, and caveats that change how they may be read."""
  flops: float
  has_remat: bool  # rematerialised forward passes are included, so flops/time is HFU, not MFU
  has_while: bool  # a while loop's body is counted once (trip count unknown when tracing)


def _dot_flops(eqn) -> float:
  lhs, _ = (v.aval for v in eqn.invars[:2])
  (lhs_contract, _), _ = eqn.params['dimension_numbers']
  out = eqn.outvars[0].aval
  return 2.0 * math.prod(out.shape) * math.prod(lhs.shape[d] for d in lhs_contract)


def _ragged_dot_flops(eqn) -> float:
  """Each lhs element meets each free (not contracted, batch or group) rhs column once: for
  lhs [m, k] by row group @ rhs [groups, k, n] that is 2*m*k*n, and the same for its transposes."""
  lhs, rhs = (v.aval for v in eqn.invars[:2])
  dims = eqn.params['ragged_dot_dimension_numbers']
  (_, rhs_contract), (_, rhs_batch) = dims.dot_dimension_numbers
  bound = set(rhs_contract) | set(rhs_batch) | set(dims.rhs_group_dimensions)
  free = math.prod(d for i, d in enumerate(rhs.shape) if i not in bound)
  return 2.0 * math.prod(lhs.shape) * free


def _conv_flops(eqn) -> float:
  rhs = eqn.invars[1].aval
  out = eqn.outvars[0].aval
  out_feature_dim = eqn.params['dimension_numbers'].rhs_spec[0]
  return 2.0 * math.prod(out.shape) * math.prod(rhs.shape) / rhs.shape[out_feature_dim]


def _scan_flops(eqn) -> float | None:
  """Model FLOPs of a selective-scan core call (forward, or its backward), else None."""
  if eqn.primitive.name not in ('jit', 'pjit') or eqn.params.get('name') != SCAN_CORE_NAME:
    return None
  ins = [getattr(v.aval, 'shape', ()) for v in eqn.invars]
  outs = [getattr(v.aval, 'shape', ()) for v in eqn.outvars]
  # forward: (u, delta, A, B, C, D) -> y (+ residuals); backward: ... -> (du, ..., dA, ...)
  backward = not (len(ins) == 6 and len(ins[0]) == 3 and len(ins[2]) == 2)
  seq, state = (outs[0], outs[2]) if backward else (ins[0], ins[2])
  elements = math.prod(seq) * state[1]
  return SCAN_FLOPS_PER_ELEMENT * elements * (2.0 if backward else 1.0)


def _sub_jaxprs(value):
  if isinstance(value, core.ClosedJaxpr):
    yield value.jaxpr
  elif isinstance(value, core.Jaxpr):
    yield value
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def _grid_size(eqn) -> int:
  grid = getattr(eqn.params.get('grid_mapping'), 'grid', ()) or ()
  return math.prod(int(g) for g in grid if isinstance(g, int)) or 1


def _manual_devices(eqn) -> int:
  """Devices a shard_map body runs on: its jaxpr has per-shard shapes."""
  mesh = eqn.params.get('mesh')
  axes = (eqn.params.get('newly_manual_axes') or eqn.params.get('manual_axes') or
          eqn.params.get('axis_names') or ())
  return math.prod(mesh.shape[a] for a in axes) if mesh is not None else 1


def _count(jaxpr: core.Jaxpr, flags: dict) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      total += _dot_flops(eqn)
      continue
    if name == 'ragged_dot_general':
      total += _ragged_dot_flops(eqn)
      continue
    if name == 'conv_general_dilated':
      total += _conv_flops(eqn)
      continue
    scan = _scan_flops(eqn)
    if scan is not None:
      total += scan
      continue
    if name.startswith('remat') or name == 'checkpoint':
      flags['remat'] = flags['remat'] or bool(eqn.params.get('differentiated', False))
    if name == 'while':
      flags['while'] = True
    if name == 'cond':
      total += max((_count(b, flags) for b in _sub_jaxprs(eqn.params['branches'])), default=0.0)
      continue
    inner = sum(_count(j, flags) for v in eqn.params.values() for j in _sub_jaxprs(v))
    if name == 'scan':
      inner *= eqn.params['length']
    elif name == 'pallas_call':
      inner *= _grid_size(eqn)
    elif name == 'shard_map':
      inner *= _manual_devices(eqn)
    total += inner
  return total


def count_jaxpr(closed_jaxpr) -> FlopCount:
  """FLOPs of a (closed) jaxpr, e.g. `jax.jit(f).trace(*args).jaxpr`."""
  jaxpr = closed_jaxpr.jaxpr if isinstance(closed_jaxpr, core.ClosedJaxpr) else closed_jaxpr
  flags = {'remat': False, 'while': False}
  flops = _count(jaxpr, flags)
  return FlopCount(flops, flags['remat'], flags['while'])


def count_flops(fn, *args, **kwargs) -> FlopCount:
  """FLOPs of calling `fn(*args, **kwargs)`; arguments may be `jax.ShapeDtypeStruct`s."""
  return count_jaxpr(jax.make_jaxpr(fn)(*args, **kwargs))


def count_model_flops(trace) -> FlopCount:
  """Model FLOPs of `trace()`, a function returning a traced program (e.g.
  `lambda: jitted.trace(*args)`), traced with reference kernels. JAX's trace caches are
  cleared before and after, so neither this trace nor a later one reuses the other's kernels."""
  jax.clear_caches()
  try:
    with kernel_backend.reference():
      return count_jaxpr(trace().jaxpr)
  finally:
    jax.clear_caches()
