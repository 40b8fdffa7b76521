"""Collective times over the links a group uses: one torus axis, several, and across slices."""

import types

import pytest

from mmjax.plan import hardware, network
from mmjax.plan.hlo_collectives import Collective, analyze_hlo, first_group

V5P = hardware.CHIPS['tpu_v5p']
MIB = 2**20


def _torus(shape=(4, 4, 4), slices=1):
  """Fake TPU devices in partition order: x fastest, then y, z, then slice."""
  out = []
  for s in range(slices):
    for z in range(shape[2]):
      for y in range(shape[1]):
        for x in range(shape[0]):
          out.append(types.SimpleNamespace(coords=(x, y, z), slice_index=s))
  return out


def test_vendor_link_bandwidths():
  assert V5P.link_bandwidth == pytest.approx(1200e9 / 12)  # 6 links, both directions quoted
  v4 = hardware.CHIPS['tpu_v4']
  assert v4.interconnect_bandwidth == pytest.approx(2 * 1.1e15 / 4096)  # ~537 GB/s both ways
  assert V5P.dcn_bandwidth_per_chip == pytest.approx(50e9 / 8)  # 50 Gbps per chip


def test_ring_all_reduce_on_one_torus_axis_uses_two_links():
  fabric = network.Fabric(_torus(), V5P, wrap=(True, True, True))
  size = 4 * MIB  # f32[1048576]
  x_ring = Collective('all-reduce', 'f32[1048576]{0}', (0, 1, 2, 3), 1)
  ici, dcn = network.collective_seconds(x_ring, fabric)
  # ring all-reduce sends 2 (n-1)/n of the buffer; both neighbours' links, 100 GB/s each way
  assert ici == pytest.approx(2 * 3 / 4 * size / (2 * 100e9)) and dcn == 0
  xy = Collective('all-reduce', 'f32[1048576]{0}', tuple(range(16)), 1)  # an x-y plane
  assert network.collective_seconds(xy, fabric)[0] == pytest.approx(
      2 * 15 / 16 * size / (4 * 100e9))
  # the same ring without wrap-around links (a mesh, not a torus) has one link per dimension
  open_ring = network.Fabric(_torus(), V5P, wrap=(False, False, False))
  assert network.collective_seconds(x_ring, open_ring)[0] == pytest.approx(
      2 * 3 / 4 * size / 100e9)


def test_all_reduce_across_slices_adds_a_dcn_term():
  devices = _torus((2, 2, 1), slices=2)  # two v5p-8 slices, partition i + 4 * slice
  fabric = network.Fabric(devices, V5P, wrap=(False, False, False))
  size = 4 * MIB
  over_data = Collective('all-reduce', 'f32[1048576]{0}', (0, 4), 1)  # one chip per slice
  ici, dcn = network.collective_seconds(over_data, fabric)
  assert ici == 0 and dcn == pytest.approx(2 * 1 / 2 * size / (50e9 / 8))
  everyone = Collective('all-reduce', 'f32[1048576]{0}', tuple(range(8)), 1)
  ici, dcn = network.collective_seconds(everyone, fabric)
  # hierarchical: reduce-scatter + all-gather in the 2x2 slice, then 1/4 of it across slices
  assert ici == pytest.approx(2 * 3 / 4 * size / (2 * 100e9))
  assert dcn == pytest.approx(2 * 1 / 2 * (size / 4) / (50e9 / 8))


def test_iota_replica_groups_and_runs_in_the_hlo():
  assert first_group('replica_groups=[2,4]<=[8]') == (0, 1, 2, 3)
  assert first_group('replica_groups=[4,2]<=[2,4]T(1,0)') == (0, 4)
  assert first_group('replica_groups={{0,2},{1,3}}') == (0, 2)
  hlo = '''HloModule m

ENTRY %main (x: f32[1048576]) -> f32[1048576] {
  %x = f32[1048576]{0} parameter(0)
  ROOT %ar = f32[1048576]{0} all-reduce(%x), replica_groups=[16,4]<=[64], to_apply=%add
}
'''
  found = analyze_hlo(hlo, 64)
  times = network.network_seconds(found, network.Fabric(_torus(), V5P, wrap=(True,) * 3))
  assert times['ici_s'] == pytest.approx(2 * 3 / 4 * 4 * MIB / (2 * 100e9))
  assert times['network_s'] == times['ici_s'] and times['dcn_s'] == 0


def test_megascale_send_is_a_dcn_all_reduce():
  """Two slices: XLA reduce-scatters in each slice over ICI and sends the 1 MiB shard to the
  megascale runtime, which all-reduces it across slices."""
  hlo = '''HloModule m

ENTRY %main (x: f32[256,8,128]) -> token[] {
  %x = f32[256,8,128]{2,1,0} parameter(0)
  %after-all = token[] after-all()
  ROOT %send = (f32[256,8,128]{2,1,0}, u32[], token[]) send(%x, %after-all), channel_id=2, is_host_transfer=true, frontend_attributes={_xla_host_transfer_handler_name="xla_megascale_runtime",_xla_megascale_reduce_operation="SUM",_xla_megascale_transfer_type="ALL_REDUCE"}
}
'''
  found = analyze_hlo(hlo, 8, num_slices=2)
  assert found.count_by_kind == {'dcn all-reduce': 1}
  assert found.bytes_by_kind['dcn all-reduce'] == pytest.approx(2 * 1 / 2 * MIB)
  fabric = network.Fabric(_torus((2, 2, 1), slices=2), V5P, wrap=(False,) * 3)
  times = network.network_seconds(found, fabric)
  assert times['ici_s'] == 0 and times['dcn_s'] == pytest.approx(MIB / (50e9 / 8))
