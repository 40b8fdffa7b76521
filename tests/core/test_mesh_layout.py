"""Meshes from the device topology: ICI rings on TPU, hybrid ICI x DCN meshes, loud errors.

TPU layouts are checked on compile-only devices from libtpu (skipped where libtpu is missing).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax.core import partitioning
from mmjax.plan import topology
from mmjax_testing import demo_config, tpu_devices


def _dist(a, b) -> int:
  return sum(abs(x - y) for x, y in zip(a.coords, b.coords))


def test_cpu_mesh_keeps_the_device_order_and_hybrid_needs_several_processes():
  mesh = partitioning.make_mesh({'data': 4, 'fsdp': 2})
  assert [d.id for d in mesh.devices.flat] == [d.id for d in jax.devices()]
  assert dict(mesh.shape) == {'data': 4, 'fsdp': 2, 'tensor': 1, 'expert': 1}
  with pytest.raises(partitioning.MeshError, match=r'ask for 2 DCN groups but the 8 devices '
                     r'form 1 process\(s\)'):
    partitioning.make_mesh({'data': 8, 'dcn_data': 2})


def test_tpu_mesh_comes_from_the_chip_topology():
  """v5e-8 is a 2x4 chip grid: the mesh is JAX's topology-aware layout (the 8 chips as one
  ring snaking through the grid), which is not device-id order."""
  from jax.experimental import mesh_utils
  devices = tpu_devices('v5e-8')
  mesh = partitioning.make_mesh({'data': 2, 'tensor': 4}, devices)
  want = mesh_utils.create_device_mesh((2, 1, 4, 1), devices)
  assert [d.id for d in mesh.devices.flat] == [d.id for d in want.flat]
  assert [d.id for d in mesh.devices.flat] != sorted(d.id for d in devices)  # not the fallback
  ring = list(mesh.devices.flat)
  assert sum(_dist(a, b) for a, b in zip(ring, ring[1:] + ring[:1])) < sum(
      _dist(a, b) for a, b in zip(sorted(ring, key=lambda d: d.id), sorted(
          ring, key=lambda d: d.id)[1:] + sorted(ring, key=lambda d: d.id)[:1]))  # shorter ring


def test_tpu_hybrid_mesh_puts_slices_on_the_outer_data_axis():
  tpu_devices('v5p-16')                                 # skips without libtpu
  devices = topology.get_topology('v5p-16', num_slices=2)
  for sizes in ({'data': 4, 'fsdp': 4, 'num_slices': 2}, {'data': 4, 'fsdp': 4, 'dcn_data': 2}):
    mesh = partitioning.make_mesh(sizes, devices)
    grid = mesh.devices.reshape(4, 4)
    assert [{d.slice_index for d in row} for row in grid] == [{0}, {0}, {1}, {1}]
  with pytest.raises(partitioning.MeshError, match='data=1 is not a multiple of config.mesh.dcn_data=2'):
    partitioning.make_mesh({'data': 1, 'fsdp': 16, 'dcn_data': 2}, devices)
  with pytest.raises(partitioning.MeshError, match=r'form 2 slice\(s\)'):
    partitioning.make_mesh({'data': 4, 'fsdp': 4, 'dcn_data': 4}, devices)


def test_tpu_mesh_that_cannot_be_laid_out_is_an_error_not_a_fallback():
  devices = tpu_devices('v5p-16')
  with pytest.raises(partitioning.MeshError, match='cannot be laid out on these 6 TPU'):
    partitioning.make_mesh({'data': 6}, devices[:6])
  with pytest.raises(partitioning.MeshError, match=r'form 1 slice\(s\)'):
    partitioning.make_mesh({'data': 8, 'dcn_data': 2}, devices)


def test_mesh_layout_keys_are_validated():
  assert demo_config('--config.mesh.dcn_data=2').mesh.dcn_data == 2
  with pytest.raises(config_lib.ConfigError, match='config.mesh.dcn_fsdp must be a positive'):
    demo_config('--config.mesh.dcn_fsdp=0')
