"""Chip table lookups and the measured CPU peak."""

import types

import jax
import pytest

from mmjax.plan import hardware


def _device(kind, platform='gpu'):
  return types.SimpleNamespace(device_kind=kind, platform=platform)


@pytest.mark.parametrize('kind, name, tflops', [
    ('NVIDIA H100 80GB HBM3', 'NVIDIA H100 SXM', 989),
    ('NVIDIA H200', 'NVIDIA H200 SXM', 989),
    ('NVIDIA A100-SXM4-40GB', 'NVIDIA A100 40GB', 312),
    ('NVIDIA A100-SXM4-80GB', 'NVIDIA A100 80GB SXM', 312),
    ('TPU v4', 'TPU v4', 275),
    ('TPU v5 lite', 'TPU v5e', 197),
    ('TPU v5', 'TPU v5p', 459),
    ('TPU v5p', 'TPU v5p', 459),
    ('TPU v6 lite', 'TPU v6e', 918),
])
def test_known_kinds(kind, name, tflops):
  device = _device(kind)
  assert hardware.chip_for_device(device).name == name
  assert hardware.peak_flops_per_device(device) == tflops * 1e12
  assert hardware.device_name(device) == name


def test_h100_is_dense_not_sparse():
  peak = hardware.peak_flops_per_device(_device('NVIDIA H100 80GB HBM3'))
  assert peak == 989e12 and peak != 1979e12


@pytest.mark.parametrize('kind, gib', [('TPU v4', 32), ('TPU v5', 95), ('TPU v6 lite', 32),
                                       ('TPU v5 lite', 16)])
def test_tpu_hbm(kind, gib):
  assert hardware.chip_for_device(_device(kind)).hbm_bytes == gib * 2**30


def test_gpu_memory_and_bandwidth():
  h100 = hardware.lookup_chip('NVIDIA H100 80GB HBM3')
  h200 = hardware.lookup_chip('NVIDIA H200')
  assert (h100.hbm_bytes, h100.hbm_bandwidth) == (80e9, 3.35e12)
  assert (h200.hbm_bytes, h200.hbm_bandwidth) == (141e9, 4.8e12)


@pytest.mark.parametrize('kind', ['NVIDIA H100 PCIe', 'NVIDIA H100 NVL', 'NVIDIA GH200 480GB',
                                  'NVIDIA H200 NVL', 'TPU v7x', 'TPU7x', 'NVIDIA B200', 'cpu',
                                  'Tesla V100-SXM2-16GB'])
def test_unknown_kinds_are_unknown(kind):
  device = _device(kind)
  assert hardware.chip_for_device(device) is None
  assert hardware.peak_flops_per_device(device) is None
  assert hardware.device_name(device) == f'unknown ({kind})'
  peak = hardware.mfu_peak(device)
  assert (peak.flops, peak.source) == (None, 'unknown')


def test_cpu_peak_is_measured():
  cpu = jax.devices('cpu')[0]
  assert hardware.peak_flops_per_device(cpu) is None
  flops = hardware.measure_cpu_peak_flops(n=256, repeats=2)
  assert 1e8 < flops < 1e14  # a real matmul rate: more than 0.1 GFLOP/s, less than 100 TFLOP/s
  peak = hardware.mfu_peak(cpu)
  assert peak.source == 'measured' and 'measured' in peak.name and peak.flops > 0
