"""Per-device memory, fit, cost and roofline records of compiled executables."""

import types

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from mmjax.plan import compile_report
from mmjax.plan import hardware


def test_report_on_cpu_compile():
  x = jnp.ones((256, 512), jnp.float32)
  w = jnp.ones((512, 128), jnp.float32)
  compiled = jax.jit(lambda x, w: x @ w).lower(x, w).compile()
  chip = hardware.lookup_chip('TPU v5')
  record = compile_report.analyze(compiled, 'matmul', chip, model_flops=2 * 256 * 512 * 128)
  memory = record['memory']
  assert memory['argument_bytes'] == (256 * 512 + 512 * 128) * 4
  assert memory['output_bytes'] == 256 * 128 * 4
  assert memory['fits'] and memory['margin_bytes'] == 95 * 2**30 - memory['total_bytes']
  assert record['cost']['flops'] == pytest.approx(2 * 256 * 512 * 128, rel=0.05)
  roof = record['roofline']
  assert roof['step_s'] == max(roof['compute_s'], roof['memory_s'])
  assert roof['compute_s'] == pytest.approx(2 * 256 * 512 * 128 / 459e12, rel=0.05)
  assert 0 < roof['mfu'] <= 1
  assert 'matmul' in compile_report.format_table([record])


def test_fit_reports_overflow_and_dominant_memory():
  memory = {'argument_bytes': 10, 'output_bytes': 8, 'alias_bytes': 8, 'temp_bytes': 30,
            'generated_code_bytes': 2, 'total_bytes': 42}
  result = compile_report.fit(memory, 40)
  assert (result['fits'], result['margin_bytes']) == (False, -2)
  assert result['dominant'].startswith('temporaries')


def test_per_device_bytes_follow_sharding():
  n = len(jax.devices())
  mesh = jax.make_mesh((n,), ('fsdp',))
  sharded, replicated = NamedSharding(mesh, P('fsdp')), NamedSharding(mesh, P())
  tree = {'w': jax.ShapeDtypeStruct((n * 4, 16), jnp.float32, sharding=sharded),
          'b': jax.ShapeDtypeStruct((16,), jnp.bfloat16, sharding=replicated),
          'static': 'not an array'}
  assert compile_report.per_device_bytes(tree) == 4 * 16 * 4 + 16 * 2


def test_cost_stats_accepts_dict_and_list():
  as_dict = types.SimpleNamespace(cost_analysis=lambda: {'flops': 6.0, 'bytes accessed': 4.0})
  as_list = types.SimpleNamespace(cost_analysis=lambda: [{'flops': 6.0, 'bytes accessed': 4.0}])
  expected = {'flops': 6.0, 'bytes_accessed': 4.0}
  assert compile_report.cost_stats(as_dict) == compile_report.cost_stats(as_list) == expected


def test_oom_message_is_parsed():
  error = RuntimeError('RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required '
                       'for HLO temporaries (24.00G) exceeds available HBM (15.75G).')
  assert compile_report.is_oom(error)
  record = compile_report.oom_record('step', hardware.lookup_chip('TPU v5 lite'), error,
                                     argument_bytes=4 * 2**30)
  assert record['memory']['margin_bytes'] == int(-8.25 * 2**30)
  assert record['memory']['dominant'].startswith('temporaries')  # 20 of the 24 GiB
  assert 'by 8.25 GiB' in compile_report.verdicts([record])[0]
