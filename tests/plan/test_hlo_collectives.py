"""Interconnect traffic read from compiled HLO: collectives, their bytes, loops multiplied out."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mmjax.plan import compile_report
from mmjax.plan import hardware, network, topology
from mmjax.plan.hlo_collectives import analyze_hlo, array_bytes
from mmjax_testing import tpu_devices

STEPS, SHARD = 5, 1024  # scan length; f32 elements per device in each collective


def _scan_with_collectives(devices):
  """A psum inside a 5-step scan (data-dependent, so it cannot be hoisted) and one all-gather."""
  mesh = Mesh(np.array(devices).reshape(8), ('x',))

  def per_device(xs):
    def body(c, x):
      return jnp.tanh(c + jax.lax.psum(x * c, 'x')), None
    c, _ = jax.lax.scan(body, jnp.ones((SHARD,), jnp.float32), xs)
    return jax.lax.all_gather(c, 'x').sum(0)

  fn = jax.shard_map(per_device, mesh=mesh, in_specs=P(None, 'x'), out_specs=P('x'))
  xs = jax.ShapeDtypeStruct((STEPS, 8 * SHARD), jnp.float32,
                            sharding=NamedSharding(mesh, P(None, 'x')))
  return jax.jit(fn).lower(xs).compile()


def _expect(found):
  # Ring algorithms over 8 devices: an all-reduce sends 2 * 7/8 of its buffer, an all-gather
  # 7/8 of its result (8 shards of 4 KiB).
  assert found.count_by_kind == {'all-reduce': STEPS, 'all-gather': 1}
  assert found.bytes_by_kind['all-reduce'] == pytest.approx(STEPS * 2 * SHARD * 4 * 7 / 8)
  assert found.bytes_by_kind['all-gather'] == pytest.approx(8 * SHARD * 4 * 7 / 8)
  assert STEPS in found.loop_trip_counts


def test_cpu_program():
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  _expect(analyze_hlo(_scan_with_collectives(jax.devices()[:8]).as_text(), 8))


def test_tpu_program_and_network_roofline():
  v5p_16 = tpu_devices('v5p-16')  # 8 chips
  compiled = _scan_with_collectives(v5p_16)
  _expect(analyze_hlo(compiled.as_text(), 8))
  chip = hardware.chip_for_device(v5p_16[0])
  record = compile_report.analyze(compiled, 'scan', chip, num_devices=8)
  roof = record['roofline']
  sent = record['collectives']['sent_bytes']
  assert roof['network_s'] == pytest.approx(sent / (1200e9 / 2))  # no fabric: every link
  assert roof['step_s'] == max(roof['compute_s'], roof['memory_s'], roof['network_s'])
  # with the devices known: the 2x2x2 slice has no wrap-around, so a ring over all 8 chips
  # spans 3 dimensions with one 100 GB/s link each
  fabric = network.Fabric(v5p_16, chip, topology.parse_tpu_name('v5p-16').wrap)
  record = compile_report.analyze(compiled, 'scan', chip, num_devices=8, fabric=fabric)
  expected = (STEPS * 2 * 7 / 8 * SHARD * 4 + 7 / 8 * 8 * SHARD * 4) / (3 * 100e9)
  assert record['collectives']['ici_s'] == pytest.approx(expected)
  assert record['roofline']['network_s'] == pytest.approx(expected)


def test_array_bytes():
  assert array_bytes('f32[8,128]{1,0}') == 8 * 128 * 4
  assert array_bytes('(bf16[4,2]{1,0}, s32[], pred[3])') == 16 + 4 + 3
  assert array_bytes('token[]') == 0


def test_roofline_names_the_network_when_it_dominates():
  chip = hardware.lookup_chip('TPU v5')
  roof = compile_report.roofline(1e9, 1e6, chip, model_flops=1e9, network_bytes=6e9)
  assert roof['bound'] == 'network' and roof['network_s'] == pytest.approx(0.01)
  assert roof['mfu'] == pytest.approx(1e9 / (0.01 * 459e12))
  serial = 1e9 / 459e12 + 1e6 / chip.hbm_bandwidth + 0.01  # no overlap: the terms add up
  assert roof['serial_s'] == pytest.approx(serial)
  assert roof['mfu_serial'] == pytest.approx(1e9 / (serial * 459e12))


def test_async_wrapped_collective_counts_once_with_iota_groups():
  hlo = '''HloModule m

%async_computation (p: f32[64]) -> f32[512] {
  %p = f32[64]{0} parameter(0)
  ROOT %ag = f32[512]{0} all-gather(%p), replica_groups=[2,8]<=[16], dimensions={0}
}

ENTRY %main (x: f32[64]) -> f32[512] {
  %x = f32[64]{0} parameter(0)
  %start = ((f32[64]{0}), f32[512]{0}, s32[]) async-start(%x), calls=%async_computation
  ROOT %done = f32[512]{0} async-done(%start), calls=%async_computation
}
'''
  found = analyze_hlo(hlo, 16)
  assert found.count_by_kind == {'all-gather': 1}  # start and done name one computation
  assert found.bytes_by_kind['all-gather'] == pytest.approx(512 * 4 * 7 / 8)  # groups of 8


def test_ragged_all_to_all_counts_the_send_buffer_not_the_worst_case_receive_buffer():
  hlo = '\n'.join([
      'HloModule m', '',
      'ENTRY %main (p: bf16[64,32]) -> bf16[256,32] {',
      '  %p = bf16[64,32]{1,0} parameter(0)',
      '  ROOT %r = bf16[256,32]{1,0} ragged-all-to-all(bf16[64,32]{1,0} %p, bf16[256,32]{1,0} '
      '%o, s32[4]{0} %a, s32[4]{0} %b, s32[4]{0} %c, s32[4]{0} %d), '
      'replica_groups={{0,1,2,3}}',
      '}'])
  found = analyze_hlo(hlo, num_devices=4)
  assert found.count_by_kind == {'all-to-all': 1}
  assert found.bytes_by_kind['all-to-all'] == pytest.approx(64 * 32 * 2 * 3 / 4)
  # Optimized HLO names its operands without shapes: the send buffer is looked up.
  by_name = hlo.replace('ragged-all-to-all(bf16[64,32]{1,0} %p, bf16[256,32]{1,0} %o',
                        'ragged-all-to-all(%p, %o')
  assert 'all-to-all(%p, %o' in by_name
  found = analyze_hlo(by_name, num_devices=4)
  assert found.bytes_by_kind['all-to-all'] == pytest.approx(64 * 32 * 2 * 3 / 4)
  assert found.instructions[0].shape.startswith('bf16[64,32]')   # what the network term times
