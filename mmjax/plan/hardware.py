"""Accelerator table: dense bf16 peak, HBM size and bandwidth, for MFU and memory checks.

Figures are per JAX device. On TPU v4/v5p JAX runs in megacore mode (one device per chip,
both TensorCores), so per device = per chip everywhere in this table. Peaks are dense
(no 2:4 sparsity). An unknown device is reported as unknown, never given another chip's peak.
"""

import dataclasses
import re
import time

import jax
import jax.numpy as jnp

GB = 10**9  # NVIDIA's data sheets quote GPU memory in decimal GB; reading it so is conservative.
GiB = 2**30  # Google quotes TPU HBM per chip in GiB (v4 "32 GiB", v5p table header "GiB").


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator model: what MFU and fit checks need to know."""
  name: str
  peak_bf16_flops: float  # dense FLOP/s per device
  hbm_bytes: int  # per device
  hbm_bandwidth: float  # bytes/s per device
  interconnect: str  # ICI / NVLink / DCN notes
  source: str
  # Chip-to-chip bandwidth within a slice / NVLink domain, bytes/s per device, both directions
  # of all links together (what the vendors quote); None where there is no such fabric.
  interconnect_bandwidth: float | None = None
  interconnect_links: int | None = None  # ICI ports / NVLink links per chip
  switched: bool = False  # NVSwitch: any group of GPUs reaches all of a GPU's links
  dcn_bandwidth_per_host: float | None = None  # bytes/s one host sends to other slices
  chips_per_host: int | None = None

  @property
  def link_bandwidth(self) -> float | None:
    """Bytes/s one link carries in one direction (the quoted total / links / 2)."""
    if not self.interconnect_bandwidth or not self.interconnect_links:
      return None
    return self.interconnect_bandwidth / (2 * self.interconnect_links)

  @property
  def dcn_bandwidth_per_chip(self) -> float | None:
    """A host's DCN bandwidth shared by its chips, bytes/s per chip."""
    if not self.dcn_bandwidth_per_host or not self.chips_per_host:
      return None
    return self.dcn_bandwidth_per_host / self.chips_per_host


_A100 = 'https://www.nvidia.com/en-us/data-center/a100/'
# The TPU compiler (libtpu 0.0.42.1) allows a program this much of HBM, measured from its
# out-of-memory messages: v4 30.75 GiB, v5e 15.75 GiB, v5p 95.74 GiB, v6e 31.25 GiB.

CHIPS = {
    # https://www.nvidia.com/en-us/data-center/h100/ : BF16 1979 TFLOPS is "with sparsity";
    # dense is half, 989 TFLOPS. 80 GB HBM3, 3.35 TB/s (SXM5).
    # NVLink 4: 18 links per GPU, 900 GB/s together, through NVSwitch (any GPU pair).
    'h100_sxm': Chip('NVIDIA H100 SXM', 989e12, 80 * GB, 3.35e12,
                     'NVLink 4: 900 GB/s per GPU; inter-node via InfiniBand/Ethernet',
                     'https://www.nvidia.com/en-us/data-center/h100/', 900e9, 18, True),
    # https://www.nvidia.com/en-us/data-center/h200/ : same GH100 compute as H100, 141 GB HBM3e.
    'h200_sxm': Chip('NVIDIA H200 SXM', 989e12, 141 * GB, 4.8e12,
                     'NVLink 4: 900 GB/s per GPU; inter-node via InfiniBand/Ethernet',
                     'https://www.nvidia.com/en-us/data-center/h200/', 900e9, 18, True),
    # https://www.nvidia.com/en-us/data-center/a100/ : BF16 312 TFLOPS dense (624 sparse).
    'a100_40gb': Chip('NVIDIA A100 40GB', 312e12, 40 * GB, 1.555e12,
                      'NVLink 3: 600 GB/s per GPU', _A100, 600e9, 12, True),
    'a100_80gb': Chip('NVIDIA A100 80GB SXM', 312e12, 80 * GB, 2.039e12,
                      'NVLink 3: 600 GB/s per GPU', _A100, 600e9, 12, True),
    'a100_80gb_pcie': Chip('NVIDIA A100 80GB PCIe', 312e12, 80 * GB, 1.935e12,
                           'NVLink bridge: 600 GB/s between pairs', _A100),
    # https://cloud.google.com/tpu/docs/v4 : 275 TFLOPS bf16, 32 GiB HBM2, 1200 GB/s, 3D torus.
    # Its per-chip ICI figure is not listed; "all-reduce bandwidth per Pod 1.1 PB/s" over 4096
    # chips is 269 GB/s per chip in one direction, so 537 GB/s both ways (6 links of ~45 GB/s
    # each way). Per-host DCN bandwidth is not published: unknown.
    'tpu_v4': Chip('TPU v4', 275e12, 32 * GiB, 1.2e12,
                   'ICI 3D mesh/torus (6 links per chip); slices joined over DCN',
                   'https://cloud.google.com/tpu/docs/v4', 2 * 1.1e15 / 4096, 6,
                   chips_per_host=4),
    # https://cloud.google.com/tpu/docs/v5e : 197 TFLOPS bf16, 16 GB HBM2, 819 GB/s, 2D torus,
    # 400 GB/s bidirectional ICI per chip over 4 ports; docs/v6e: 8 chips and 2 x 100 Gbps NICs
    # per v5e host.
    'tpu_v5e': Chip('TPU v5e', 197e12, 16 * GiB, 0.819e12,
                    'ICI 2D torus, 400 GB/s bidirectional per chip; slices joined over DCN',
                    'https://cloud.google.com/tpu/docs/v5e', 400e9, 4,
                    dcn_bandwidth_per_host=2 * 100e9 / 8, chips_per_host=8),
    # https://cloud.google.com/tpu/docs/v5p : 459 TFLOPS bf16, 95 GiB HBM2e, 2765 GB/s, 1200 GB/s
    # bidirectional ICI per chip (6 links of a 3D torus), DCN 50 Gbps per chip, 4 chips a host.
    'tpu_v5p': Chip('TPU v5p', 459e12, 95 * GiB, 2.765e12,
                    'ICI 3D torus, 1200 GB/s bidirectional per chip; DCN 50 Gbps per chip',
                    'https://cloud.google.com/tpu/docs/v5p', 1200e9, 6,
                    dcn_bandwidth_per_host=4 * 50e9 / 8, chips_per_host=4),
    # https://cloud.google.com/tpu/docs/v6e : 918 TFLOPS bf16, 32 GB HBM, 1638 GB/s, 2D torus,
    # ICI 3200 Gbps per chip each way over 4 ports; 8 chips and 4 x 200 Gbps NICs per host.
    'tpu_v6e': Chip('TPU v6e', 918e12, 32 * GiB, 1.638e12,
                    'ICI 2D torus, 800 GB/s bidirectional per chip; slices joined over DCN',
                    'https://cloud.google.com/tpu/docs/v6e', 800e9, 4,
                    dcn_bandwidth_per_host=4 * 200e9 / 8, chips_per_host=8),
}

# `device.device_kind` strings (full match, case-insensitive) -> CHIPS key. Variants with other
# peaks or memory (H100 PCIe / NVL, GH200, H200 NVL) are deliberately absent: they are unknown.
_KIND_PATTERNS = (
    (r'NVIDIA H100 80GB HBM3|NVIDIA H100[ -]SXM5?([ -]80GB)?', 'h100_sxm'),
    (r'NVIDIA H200([ -]SXM5?)?([ -]141GB)?', 'h200_sxm'),
    (r'NVIDIA A100[ -](SXM4?|PCIE)[ -]40GB', 'a100_40gb'),
    (r'NVIDIA A100[ -]SXM4?[ -]80GB', 'a100_80gb'),
    (r'NVIDIA A100[ -]80GB[ -]PCIE|NVIDIA A100[ -]PCIE[ -]80GB', 'a100_80gb_pcie'),
    (r'TPU v4', 'tpu_v4'),
    (r'TPU v5 ?lite|TPU v5e', 'tpu_v5e'),
    (r'TPU v5p?', 'tpu_v5p'),  # v5p devices report 'TPU v5'.
    (r'TPU v6 ?lite|TPU v6e', 'tpu_v6e'),
)


def lookup_chip(device_kind: str) -> Chip | None:
  """The table entry for a `device_kind` string, or None when it is not a known chip."""
  kind = device_kind.strip()
  for pattern, key in _KIND_PATTERNS:
    if re.fullmatch(pattern, kind, flags=re.IGNORECASE):
      return CHIPS[key]
  return None


def chip_for_device(device) -> Chip | None:
  """The table entry for a JAX device (by `device.device_kind`), or None when unknown."""
  return lookup_chip(device.device_kind)


def peak_flops_per_device(device) -> float | None:
  """Spec dense bf16 FLOP/s of one device, or None when the device is not in the table."""
  chip = chip_for_device(device)
  return chip.peak_bf16_flops if chip else None


def device_name(device) -> str:
  """A label for reports: the chip's name, or 'unknown (<device_kind>)'."""
  chip = chip_for_device(device)
  return chip.name if chip else f'unknown ({device.device_kind})'


def measure_cpu_peak_flops(n: int = 2048, repeats: int = 5, device=None) -> float:
  """Measured (not spec) FLOP/s of an [n, n] float32 matmul on a CPU device, best of `repeats`.

  CPUs have no datasheet peak here, so CPU MFU is relative to this measured matmul rate.
  """
  device = device or jax.devices('cpu')[0]
  a = jax.device_put(jnp.ones((n, n), jnp.float32), device)
  matmul = jax.jit(jnp.matmul)
  matmul(a, a).block_until_ready()  # compile and warm up
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * n**3 / best


@dataclasses.dataclass(frozen=True)
class Peak:
  """The peak an MFU is relative to, and where it came from."""
  name: str
  flops: float | None
  source: str  # 'spec' (datasheet), 'measured' (CPU matmul) or 'unknown'


def mfu_peak(device, measure_cpu: bool = True) -> Peak:
  """Peak for MFU on `device`: datasheet for known chips, measured matmul on CPU, else unknown."""
  chip = chip_for_device(device)
  if chip:
    return Peak(chip.name, chip.peak_bf16_flops, 'spec')
  if device.platform == 'cpu' and measure_cpu:
    return Peak('cpu (measured f32 matmul)', measure_cpu_peak_flops(device=device), 'measured')
  return Peak(device_name(device), None, 'unknown')
