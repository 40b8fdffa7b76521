"""TPU slice names as users write them (`v5p-256`, `v5e-8`) -> compile-only devices and meshes.

How names count (Cloud TPU docs): v4 and v5p names count TensorCores, two per chip
(https://cloud.google.com/tpu/docs/v5p: "2x2x1 | 8 cores | 4 chips"; docs/v4: "Each TPU v4 chip
contains two TensorCores"), so `v5p-256` is 128 chips in a 4x4x8 torus. v5e and v6e have one
TensorCore per chip and their names count chips (docs/v5e: "Each v5e chip contains one
TensorCore"; docs/v6e likewise), so `v6e-16` is 16 chips, 4x4. JAX runs v4/v5p in megacore mode:
one device per chip. Cubes of 4x4x4 chips join into larger v4/v5p slices; 2D pods top out at
16x16. Multi-slice joins identical slices over DCN (the data-center network).
"""

import dataclasses
import math
import os
import re

import numpy as np
from jax.experimental import mesh_utils, topologies
from jax.sharding import Mesh

from mmjax.core.choices import MESH_AXES
from mmjax.errors import UserError


ACCEPTED = ('v4-N and v5p-N with N = TensorCores (2 per chip): 8, 16, 32, 64, or a multiple of 128 '
            'up to 8192 (v4) / 12288 (v5p); v5e-N (or v5litepod-N) and v6e-N with N = chips: '
            '1, 4, 8, 16, 32, 64, 128, 256')


class TopologyError(UserError, ValueError):
  """A topology name, slice count or mesh that cannot be built; says what is accepted."""


@dataclasses.dataclass(frozen=True)
class _Generation:
  jax_name: str  # the prefix get_topology_desc takes
  chip_config: str  # 'megacore' = one device per chip for 2-TensorCore chips
  cores_per_chip: int
  max_chips: int  # largest single slice


_GENERATIONS = {
    'v4': _Generation('v4', 'megacore', 2, 4096),  # docs/v4: 4096 chips per pod
    'v5p': _Generation('v5', 'megacore', 2, 6144),  # docs/v5p: max slice 16x16x24 = 6144 chips
    'v5e': _Generation('v5e', 'default', 1, 256),  # docs/v5e: 256 chips per pod, 2D torus
    'v6e': _Generation('v6e', 'default', 1, 256),  # docs/v6e: 256 chips per pod, 2D torus
}
_ALIASES = {'v5litepod': 'v5e'}
_SMALL_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4)}  # below one 4x4x4 cube
_SHAPES_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16),
              256: (16, 16)}


@dataclasses.dataclass(frozen=True)
class TpuSlice:
  """One slice as `get_topology_desc` wants it, with the user's name and the chip count."""
  name: str  # e.g. 'v5p-256'
  generation: str  # 'v4' | 'v5p' | 'v5e' | 'v6e'
  chips: int  # = JAX devices per slice
  shape: tuple[int, ...]  # chips along each torus axis
  chip_config: str
  chips_per_host_bounds: tuple[int, int, int]
  wrap: tuple[bool, bool, bool]  # torus wrap-around links per axis

  @property
  def topology_name(self) -> str:
    """E.g. 'v5:4x4x8', the `topology_name` argument of `get_topology_desc`."""
    jax_name = _GENERATIONS[self.generation].jax_name
    return f"{jax_name}:{'x'.join(map(str, self.shape))}"


def _cube_shape(chips: int) -> tuple[int, int, int] | None:
  """Chip shape of a v4/v5p slice: fixed below one 4x4x4 cube, most cube-like above."""
  if chips in _SMALL_3D:
    return _SMALL_3D[chips]
  if chips % 64:
    return None
  cubes = chips // 64
  options = [(a, b, cubes // (a * b)) for a in range(1, cubes + 1) for b in range(a, cubes + 1)
             if cubes % (a * b) == 0 and cubes // (a * b) >= b]
  a, b, c = min(options, key=lambda s: (s[2], -s[0]))  # smallest longest side, then fattest
  return 4 * a, 4 * b, 4 * c


def parse_tpu_name(name: str) -> TpuSlice:
  """`v5p-256` -> TpuSlice(chips=128, shape=(4, 4, 8), ...); raises TopologyError if not valid."""
  match = re.fullmatch(r'(v4|v5p|v5e|v5litepod|v6e)-(\d+)', name.strip().lower())
  if not match:
    raise TopologyError(f'Unknown TPU topology {name!r}; accepted: {ACCEPTED}.')
  generation = _ALIASES.get(match.group(1), match.group(1))
  gen = _GENERATIONS[generation]
  count = int(match.group(2))
  chips, odd = divmod(count, gen.cores_per_chip)
  shape = None
  if not odd and 0 < chips <= gen.max_chips:
    shape = _cube_shape(chips) if gen.cores_per_chip == 2 else _SHAPES_2D.get(chips)
  if shape is None:
    raise TopologyError(f'{name!r} is not a valid {generation} slice size; accepted: {ACCEPTED}.')
  if len(shape) == 3:
    wrap = (chips >= 64,) * 3  # full cubes are wired into a torus
    host_bounds = (2, 2, 1)  # 4 chips per v4/v5p host
  else:
    wrap = (shape[0] == 16, shape[1] == 16, False)  # only a full 16-chip row wraps around
    host_bounds = (1, 1, 1) if chips == 1 else (2, 2, 1)
  return TpuSlice(f'{generation}-{count}', generation, chips, shape, gen.chip_config,
                  host_bounds, wrap)


def get_topology(name: str, num_slices: int = 1) -> list:
  """Compile-only TPU devices of `num_slices` slices named `name` (no TPU needed, only libtpu)."""
  spec = parse_tpu_name(name)
  if num_slices < 1:
    raise TopologyError(f'num_slices must be a positive integer, got {num_slices}.')
  # Compile-only use holds no TPU; without this, processes block each other on libtpu's lockfile.
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  try:
    desc = topologies.get_topology_desc(
        platform='tpu', topology_name=spec.topology_name, chip_config_name=spec.chip_config,
        chips_per_host_bounds=spec.chips_per_host_bounds, num_slices=num_slices, wrap=spec.wrap)
  except RuntimeError as e:
    raise TopologyError(f'Cannot build TPU topology {name} ({spec.topology_name}): {e}; '
                        'compiling for TPU needs the libtpu package (pip install libtpu).') from e
  devices = list(desc.devices)
  if len(devices) != spec.chips * num_slices:
    raise TopologyError(f'libtpu gave {len(devices)} devices for {num_slices} x {name}, expected '
                        f'{spec.chips * num_slices}.')
  return devices


def _divisors(n: int) -> list[int]:
  return [d for d in range(1, n + 1) if n % d == 0]


def resolve_mesh_sizes(mesh_sizes, num_devices: int) -> tuple[int, ...]:
  """Axis sizes in MESH_AXES order with one -1 filled in; raises TopologyError if they don't fit."""
  sizes = [int(mesh_sizes.get(axis, 1)) for axis in MESH_AXES]
  given = ' '.join(f'{a}={s}' for a, s in zip(MESH_AXES, sizes))
  hint = (f'choose sizes that multiply to {num_devices} (each one of '
          f'{", ".join(map(str, _divisors(num_devices)))}), or set one axis to -1')
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise TopologyError(f'Mesh {given} is invalid: use positive sizes and at most one -1; {hint}.')
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise TopologyError(f'Mesh {given} cannot fill {num_devices} devices; {hint}.')
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise TopologyError(f'Mesh {given} uses {math.prod(sizes)} devices but there are '
                        f'{num_devices}; {hint}.')
  return tuple(sizes)


def make_aot_mesh(mesh_sizes, devices, num_slices: int = 1) -> Mesh:
  """Mesh ('data', 'fsdp', 'tensor', 'expert') over `devices`; with num_slices > 1 the data
  axis is split so its outer factor crosses slices over DCN and everything else stays on ICI.

  `mesh_sizes` maps axis -> size (missing = 1, one -1 = the rest), sizes over all slices.
  """
  devices = list(devices)
  shape = resolve_mesh_sizes(mesh_sizes, len(devices))
  if num_slices == 1:
    try:
      grid = mesh_utils.create_device_mesh(shape, devices)
    except (ValueError, NotImplementedError, AssertionError):
      grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    return Mesh(grid, MESH_AXES)
  data = shape[0]
  if num_slices < 1 or len(devices) % num_slices:
    raise TopologyError(f'{len(devices)} devices cannot form {num_slices} equal slices.')
  if data % num_slices:
    valid = [d for d in _divisors(len(devices)) if d % num_slices == 0]
    raise TopologyError(f'With {num_slices} slices the data axis crosses slices over DCN, so data '
                        f'must be a multiple of {num_slices} (one of {valid}); got data={data}.')
  if len({getattr(d, 'slice_index', None) for d in devices}) != num_slices:
    raise TopologyError(f'The devices do not come from {num_slices} slices; build them with '
                        f'get_topology(name, num_slices={num_slices}).')
  ici = (data // num_slices,) + shape[1:]
  dcn = (num_slices, 1, 1, 1)
  try:
    grid = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices)
  except (ValueError, NotImplementedError, AssertionError):
    grid = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices, allow_split_physical_axes=True)
  return Mesh(np.asarray(grid), MESH_AXES)
