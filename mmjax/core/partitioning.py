"""Device mesh, logical axis rules, and logical → mesh shardings.

Layers name their axes logically (`embed`, `mlp`, `heads`, ...); one rules table maps logical
names to the mesh axes `('data', 'fsdp', 'tensor', 'expert')`. Activations are constrained with
`constrain(x, ('batch', 'length', 'embed'))`, which is a no-op outside `axis_rules(mesh, rules)`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mmjax.core.choices import BATCH_AXES, MESH_AXES
from mmjax.errors import UserError
from mmjax.config.defaults import setting


# logical name -> mesh axes, the one rules table. A mesh axis already used by an earlier dimension of the
# same array is skipped, so activations [batch, length, embed] put `fsdp` on batch only.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ('batch', BATCH_AXES),
    ('length', None),
    ('embed', 'fsdp'),
    ('heads', 'tensor'),
    ('kv', None),
    ('mlp', 'tensor'),
    ('expert', 'expert'),
    ('vocab', 'tensor'),
)


class MeshError(UserError, ValueError):
  """A mesh that does not fit the devices; one sentence naming the fix."""


def mesh_shape(mesh_config, num_devices: int) -> dict[str, int]:
  """Resolves the config's axis sizes (-1 = the remaining devices) for `num_devices` devices."""
  sizes = {a: int(mesh_config.get(a, 1)) for a in MESH_AXES}
  known = math.prod(v for v in sizes.values() if v != -1)
  free = [a for a, v in sizes.items() if v == -1]
  if free:
    if num_devices % known:
      raise MeshError(f'mesh {sizes} does not divide {num_devices} devices: the fixed axes '
                      f'multiply to {known}; choose sizes whose product divides {num_devices}.')
    sizes[free[0]] = num_devices // known
  if math.prod(sizes.values()) != num_devices:
    raise MeshError(
        f'mesh {sizes} uses {math.prod(sizes.values())} devices but {num_devices} are available: '
        f'make the product of config.mesh.{{data,fsdp,tensor,expert}} equal {num_devices} '
        '(or set one axis to -1).')
  return sizes


def _granules(devices) -> tuple[str, int]:
  """What DCN joins: TPU slices (the processes of one slice share ICI), else processes."""
  if devices[0].platform == 'tpu':
    return 'slice', len({getattr(d, 'slice_index', 0) for d in devices})
  return 'process', len({d.process_index for d in devices})


def dcn_shape(mesh_config, sizes: dict[str, int], devices) -> tuple[int, ...] | None:
  """Per-axis DCN factors (MESH_AXES order) from `config.mesh.dcn_*` or `num_slices`, or None
  for a single-granule (ICI-only) mesh. With `num_slices` > 1 and no `dcn_*`, the data axis
  crosses the slices. Axis sizes in `sizes` are totals over all slices."""
  dcn = [int(mesh_config.get(f'dcn_{a}', 1) or 1) for a in MESH_AXES]
  num_slices = int(setting(mesh_config, 'mesh.num_slices') or 0)
  if num_slices > 1 and math.prod(dcn) == 1:
    dcn[0] = num_slices
  if math.prod(dcn) == 1:
    return None
  kind, count = _granules(devices)
  if math.prod(dcn) != count:
    raise MeshError(f'config.mesh.dcn_* (or num_slices) ask for {math.prod(dcn)} DCN groups but '
                    f'the {len(devices)} devices form {count} {kind}(s): make the dcn_* sizes '
                    f'multiply to {count}.')
  bad = [a for a, d in zip(MESH_AXES, dcn) if sizes[a] % d]
  if bad:
    raise MeshError(f'config.mesh.{bad[0]}={sizes[bad[0]]} is not a multiple of '
                    f'config.mesh.dcn_{bad[0]}={dcn[MESH_AXES.index(bad[0])]}: axis sizes are '
                    'totals over all slices, so each must be a multiple of its DCN factor.')
  return tuple(dcn)


def device_grid(shape: tuple[int, ...], devices, dcn: tuple[int, ...] | None) -> np.ndarray:
  """Devices laid out as `shape` by JAX's topology-aware mesh utilities (ICI rings on TPU;
  slices or processes outermost for `dcn`). On TPU a shape that the physical torus cannot
  hold is a MeshError, never a silent row-major fallback."""
  ici = shape if dcn is None else tuple(s // d for s, d in zip(shape, dcn))
  kind, _ = _granules(devices)
  errors = []
  for split in (False, True):  # whole physical axes first; split them only if needed
    try:
      if dcn is None:
        return mesh_utils.create_device_mesh(ici, devices, allow_split_physical_axes=split)
      return mesh_utils.create_hybrid_device_mesh(
          ici, dcn, devices, process_is_granule=kind == 'process', allow_split_physical_axes=split)
    except (ValueError, NotImplementedError, AssertionError) as e:
      text = ' '.join(str(e).split()) or type(e).__name__
      errors.append(text if len(text) <= 100 else text[:97] + '...')
  where = f'{len(devices)} {devices[0].device_kind} devices'
  raise MeshError(f'mesh {dict(zip(MESH_AXES, shape))} (ICI {ici}, DCN {dcn or "none"}) cannot be '
                  f'laid out on these {where} (JAX: {errors[-1]}): run on whole slices and '
                  "choose axis sizes that factor each slice's chip grid.")


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh with axes ('data', 'fsdp', 'tensor', 'expert') over `devices` (default: all),
  hybrid ICI x DCN when `config.mesh.dcn_*` or `num_slices` ask for it (see `dcn_shape`)."""
  devices = list(jax.devices() if devices is None else devices)
  sizes = mesh_shape(mesh_config, len(devices))
  shape = tuple(sizes[a] for a in MESH_AXES)
  grid = device_grid(shape, devices, dcn_shape(mesh_config, sizes, devices))
  return Mesh(np.asarray(grid).reshape(shape), MESH_AXES)


def rules_from_config(config) -> tuple[tuple[str, Any], ...]:
  """The rules table, with `config.partitioning.rules` entries (if any) overriding defaults."""
  rules = dict(DEFAULT_RULES)
  extra = config.get('partitioning', {}).get('rules', None) if 'partitioning' in config else None
  if extra:
    for name, axes in extra:
      rules[name] = tuple(axes) if isinstance(axes, (list, tuple)) else axes
  return tuple(rules.items())


def logical_to_spec(logical_axes: Sequence[str | None], rules, mesh: Mesh | None = None,
                    shape: Sequence[int] | None = None) -> P:
  """Maps logical names to a PartitionSpec; with `mesh` and `shape`, mesh axes that do not
  divide the dimension (or have size 1) are dropped, so every spec is valid for its array."""
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for i, name in enumerate(logical_axes):
    axes = table.get(name) if name is not None else None
    if axes is None:
      spec.append(None)
      continue
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    chosen = []
    for a in axes:
      if a in used:
        continue
      if mesh is not None:
        size = mesh.shape[a]
        if size == 1:
          continue
        if shape is not None:
          prod = math.prod(mesh.shape[c] for c in chosen) * size
          if shape[i] % prod:
            continue
      chosen.append(a)
    used.update(chosen)
    spec.append(tuple(chosen) if len(chosen) > 1 else (chosen[0] if chosen else None))
  return P(*spec)


def named_sharding(mesh: Mesh, logical_axes, rules, shape=None) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(logical_axes, rules, mesh, shape))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (example) dimension over the data-parallel axes; the rest replicated."""
  axes = tuple(a for a in BATCH_AXES if mesh.shape[a] > 1)
  return NamedSharding(mesh, P(axes if axes else None))


def host_batch_slot(mesh: Mesh, global_batch: int) -> tuple[int, int]:
  """`(slot, num_slots)`: this process's devices hold rows `[slot * b, (slot + 1) * b)` of a
  `[global_batch, ...]` array under `batch_sharding(mesh)`, `b = global_batch // num_slots`
  (`(0, 1)` when the batch is replicated over processes). Raises MeshError when the rows are
  not one contiguous block, which `make_array_from_process_local_data` needs."""
  shards = batch_sharding(mesh).addressable_devices_indices_map((global_batch,))
  rows = set()
  for index in shards.values():
    rows.update(range(*index[0].indices(global_batch)))
  lo, n = min(rows), len(rows)
  if rows != set(range(lo, lo + n)) or global_batch % n or lo % n:
    raise MeshError(f'process {jax.process_index()} holds rows {sorted(rows)[:8]}... of a batch '
                    f'of {global_batch}, not one aligned block: order the mesh so each '
                    "process's devices are adjacent along the data axes.")
  return lo // n, global_batch // n


def data_parallel_size(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


_CONTEXT: contextvars.ContextVar = contextvars.ContextVar('mmjax_axis_rules', default=None)


@contextlib.contextmanager
def axis_rules(mesh: Mesh, rules):
  """Activations traced inside this block are constrained with `rules` on `mesh`."""
  token = _CONTEXT.set((mesh, tuple(rules)))
  try:
    yield
  finally:
    _CONTEXT.reset(token)


def current_context():
  """`(mesh, rules)` while tracing inside `axis_rules`, else None."""
  return _CONTEXT.get()


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
  """`with_sharding_constraint` by logical names; identity outside `axis_rules`."""
  ctx = _CONTEXT.get()
  if ctx is None:
    return x
  mesh, rules = ctx
  if len(logical_axes) != x.ndim:
    raise ValueError(f'constrain: {len(logical_axes)} names {logical_axes} for a {x.ndim}-d array.')
  return jax.lax.with_sharding_constraint(x, named_sharding(mesh, logical_axes, rules, x.shape))
