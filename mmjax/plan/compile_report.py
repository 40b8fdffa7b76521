"""What a compiled step costs per device: memory against HBM, FLOPs, bytes, interconnect
traffic, roofline time, MFU and HFU.

Reads `compiled.memory_analysis()` and `compiled.cost_analysis()` of an SPMD executable; both
describe one device's partition. Cost analysis counts a loop body once, so a model that scans
over layers under-reports FLOPs and bytes; such reports carry `loops_counted_once`, and the
roofline's compute term uses the largest of XLA's count and the traced hardware and model
counts (`flop_count.py`). MFU divides model FLOPs (attention as its mathematics) by the step
time at peak; HFU divides hardware FLOPs (kernels as compiled: padding, recomputation). Both are
upper bounds ("MFU <="), not estimates: every FLOP runs at the chip's peak rate, so a
compute-bound step's MFU is just model / hardware FLOPs. Tuned dense LLMs reach 64-71% MFU on
v5p in MaxText's published tables, a ViT-B-sized encoder less; what a step really reaches is
measured on the device (`python -m tools.accelerator_report`).
Collective traffic comes from the optimized HLO (`hlo_collectives.py`, loops multiplied out),
timed over the links each group uses (`network.py`) when the devices are known.
"""

import math
import re

import jax
import numpy as np

from mmjax.plan import hlo_collectives, network
from mmjax.plan.hardware import Chip

_MEMORY_FIELDS = {
    'argument_bytes': 'argument_size_in_bytes',  # params, optimizer state, batch
    'output_bytes': 'output_size_in_bytes',
    'alias_bytes': 'alias_size_in_bytes',  # outputs written into donated arguments
    'temp_bytes': 'temp_size_in_bytes',  # activations, gradients, workspace
    'generated_code_bytes': 'generated_code_size_in_bytes',
}
_DOMINANT = {
    'argument_bytes': 'arguments (parameters, optimizer state, batch)',
    'output_bytes': 'outputs not aliased to donated inputs',
    'temp_bytes': 'temporaries (activations, gradients, workspace)',
}


def memory_stats(compiled) -> dict | None:
  """Per-device bytes from `memory_analysis()`, plus `total_bytes` = args + outputs - aliased
  + temps + code (what must sit in HBM at once); None when the backend reports nothing."""
  stats = compiled.memory_analysis()
  if isinstance(stats, (list, tuple)):
    stats = stats[0] if stats else None
  if stats is None:
    return None
  out = {key: int(getattr(stats, attr, 0) or 0) for key, attr in _MEMORY_FIELDS.items()}
  out['total_bytes'] = (out['argument_bytes'] + out['output_bytes'] - out['alias_bytes'] +
                        out['temp_bytes'] + out['generated_code_bytes'])
  return out


def cost_stats(compiled) -> dict:
  """Per-device `flops` and `bytes_accessed` from `cost_analysis()` (a dict, or a list of one
  dict per module in older jax); None for a figure the backend does not report."""
  costs = compiled.cost_analysis()
  if isinstance(costs, (list, tuple)):
    costs = [c for c in costs if c]
    merged = {}
    for c in costs:
      for key in ('flops', 'bytes accessed'):
        if key in c:
          merged[key] = merged.get(key, 0.0) + float(c[key])
    costs = merged
  costs = costs or {}
  flops, accessed = costs.get('flops'), costs.get('bytes accessed')
  return {'flops': None if flops is None or flops < 0 else float(flops),
          'bytes_accessed': None if accessed is None or accessed < 0 else float(accessed)}


def fit(memory: dict, hbm_bytes: int | None) -> dict:
  """Whether `memory['total_bytes']` fits in `hbm_bytes`, the margin, and what dominates."""
  sizes = {'argument_bytes': memory['argument_bytes'], 'temp_bytes': memory['temp_bytes'],
           'output_bytes': memory['output_bytes'] - memory['alias_bytes']}
  dominant = max(sizes, key=sizes.get)
  if hbm_bytes is None:
    return {'hbm_bytes': None, 'fits': None, 'margin_bytes': None, 'dominant': _DOMINANT[dominant]}
  return {'hbm_bytes': int(hbm_bytes), 'fits': memory['total_bytes'] <= hbm_bytes,
          'margin_bytes': int(hbm_bytes - memory['total_bytes']), 'dominant': _DOMINANT[dominant]}


def roofline(flops: float | None, bytes_accessed: float | None, chip: Chip | None,
             model_flops: float | None = None, network_bytes: float | None = None,
             hardware_flops: float | None = None, network_s: float | None = None) -> dict:
  """Step time on `chip` from three terms: flops / peak, bytes / HBM bandwidth, and network
  time (`network_s` from `network.py`, else sent bytes / outgoing bandwidth of all links, half
  the bidirectional figure vendors quote). `step_s` is their max (perfect overlap, a lower bound)
  and `serial_s` their sum (no overlap); `mfu` / `mfu_serial` are what `model_flops` and `hfu` /
  `hfu_serial` what `hardware_flops` (per device per step) make of the peak at those times:
  upper bounds (`mfu_is_bound`), since every FLOP is assumed to run at peak. None entries where
  a figure is missing."""
  out = {'compute_flops': max(f for f in (flops, model_flops, hardware_flops, 0.0)
                              if f is not None),
         'compute_s': None, 'memory_s': None, 'network_s': None, 'step_s': None, 'bound': None,
         'serial_s': None, 'mfu': None, 'mfu_serial': None, 'hfu': None, 'hfu_serial': None,
         'mfu_is_bound': True}
  if chip is None:
    return out
  out['compute_s'] = out['compute_flops'] / chip.peak_bf16_flops
  if bytes_accessed is not None:
    out['memory_s'] = bytes_accessed / chip.hbm_bandwidth
  if network_s is not None:
    out['network_s'] = network_s
  elif network_bytes is not None and chip.interconnect_bandwidth:
    out['network_s'] = network_bytes / (chip.interconnect_bandwidth / 2)
  times = {k: out[k] for k in ('compute_s', 'memory_s', 'network_s') if out[k] is not None}
  out['step_s'] = max(times.values())
  out['serial_s'] = sum(times.values())
  out['bound'] = max(times, key=times.get).removesuffix('_s')
  for key, numerator in (('mfu', model_flops), ('hfu', hardware_flops)):
    if numerator and 0 < out['step_s'] < float('inf'):
      out[key] = numerator / (out['step_s'] * chip.peak_bf16_flops)
      out[f'{key}_serial'] = numerator / (out['serial_s'] * chip.peak_bf16_flops)
  return out


def collective_stats(compiled, num_devices: int,
                     fabric: network.Fabric | None = None) -> dict | None:
  """Per-device bytes sent by collectives per step, by kind, and (given the `fabric`) their ICI
  and DCN seconds; None when the HLO is unreadable."""
  try:
    text = compiled.as_text() or ''
  except Exception:  # pylint: disable=broad-except  # some backends cannot print the HLO
    return None
  slices = len({getattr(d, 'slice_index', 0) for d in fabric.devices}) if fabric else 1
  found = hlo_collectives.analyze_hlo(text, num_devices, slices)
  out = {'sent_bytes': found.total_bytes, 'sent_bytes_by_kind': found.bytes_by_kind,
         'count_by_kind': found.count_by_kind, 'loop_trip_counts': list(found.loop_trip_counts)}
  if fabric is not None and fabric.chip is not None:
    out.update(network.network_seconds(found, fabric))
  return out


def analyze(compiled, name: str, chip: Chip | None, model_flops: float | None = None,
            num_devices: int = 1, hardware_flops: float | None = None,
            fabric: network.Fabric | None = None) -> dict:
  """One JSON-ready record for a compiled executable: memory/fit, cost, collectives, roofline,
  MFU and HFU. `model_flops` / `hardware_flops`: per device per call (`flop_count.py`);
  `num_devices`: the program's device count (for collectives without explicit groups);
  `fabric`: its devices, to time each collective over its own links (`network.py`)."""
  memory = memory_stats(compiled)
  cost = cost_stats(compiled)
  collectives = collective_stats(compiled, num_devices, fabric)  # the one read of the HLO text
  return {
      'name': name, 'status': 'ok', 'chip': chip.name if chip else 'unknown',
      'memory': None if memory is None else {**memory, **fit(memory, chip and chip.hbm_bytes)},
      'cost': {**cost, 'loops_counted_once': bool(collectives and
                                                  collectives['loop_trip_counts'])},
      'collectives': collectives,
      'model_flops': model_flops,
      'hardware_flops': hardware_flops,
      'roofline': roofline(cost['flops'], cost['bytes_accessed'], chip, model_flops,
                           collectives and collectives['sent_bytes'], hardware_flops,
                           collectives and collectives.get('network_s')),
  }


_UNITS = {'': 1, 'K': 2**10, 'M': 2**20, 'G': 2**30, 'T': 2**40}


def _size(text: str) -> int:
  number, unit = re.fullmatch(r'([\d.]+)\s*([KMGT]?)i?B?', text.strip()).groups()
  return int(float(number) * _UNITS[unit])


def per_device_bytes(tree) -> int:
  """Bytes one device holds of the arrays (or ShapeDtypeStructs with shardings) in `tree`."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    if not hasattr(leaf, 'shape') or not hasattr(leaf, 'dtype'):
      continue  # static arguments
    sharding = getattr(leaf, 'sharding', None)
    shape = sharding.shard_shape(leaf.shape) if sharding is not None else leaf.shape
    total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
  return total


def oom_record(name: str, chip: Chip | None, error: Exception,
               argument_bytes: int | None = None) -> dict:
  """A record for a compile that failed with RESOURCE_EXHAUSTED: needed vs available HBM, and
  (given the per-device `argument_bytes`) whether arguments or the rest dominate."""
  message = str(error)
  needed = available = None
  match = (re.search(r'\(([\d.]+[KMGT]?)\) exceeds available HBM \(([\d.]+[KMGT]?)\)', message) or
           re.search(r'Used ([\d.]+[KMGT]?) of ([\d.]+[KMGT]?) hbm', message))
  if match:  # the compiler's figure counts arguments, outputs and temporaries together
    needed, available = _size(match.group(1)), _size(match.group(2))
  dominant = 'unknown (see the compiler message)'
  if needed is not None and argument_bytes is not None:
    rest = needed - argument_bytes
    dominant = (_DOMINANT['argument_bytes'] if argument_bytes >= rest else
                'temporaries and outputs (activations, gradients, workspace, new state)')
  return {
      'name': name, 'status': 'oom', 'chip': chip.name if chip else 'unknown',
      'memory': {'argument_bytes': argument_bytes, 'total_bytes': needed, 'hbm_bytes': available,
                 'fits': False, 'margin_bytes': None if needed is None else available - needed,
                 'dominant': dominant},
      'error': message.strip().splitlines()[0][:500],
  }


def is_oom(error: Exception) -> bool:
  """Whether a compile error is the compiler reporting that HBM is too small."""
  text = str(error)
  return 'RESOURCE_EXHAUSTED' in text or 'Ran out of memory' in text


def _gib(n) -> str:
  return '-' if n is None else f'{n / 2**30:.2f}'


def _range(low, high, fmt) -> str:
  if low is None or high is None:
    return '-'
  return fmt(low) if fmt(low) == fmt(high) else f'{fmt(low)}-{fmt(high)}'


def format_table(records: list[dict]) -> str:
  """A short fixed-width table: one row per compiled function."""
  width = min(max([len('function')] + [len(r['name']) for r in records]), 64)
  header = (f"{'function':<{width}} {'args':>7} {'temp':>7} {'out':>7} {'total':>7} {'HBM':>7} "
            f"{'fits':>4} {'TFLOP':>8} {'GB acc':>8} {'GB sent':>8} {'step ms':>13} {'bound':>7} "
            f"{'MFU <=':>9} {'HFU <=':>9}")
  lines = ['per device: memory in GiB (out = outputs not aliased to donated inputs), TFLOP '
           '(the compute term: the largest FLOP count), GB of HBM accessed and GB sent by '
           'collectives per call; roofline step time, and upper bounds of MFU (model FLOPs) and '
           'HFU (hardware FLOPs) at the chip\'s peak FLOP/s, each a range from perfect overlap '
           'of compute, HBM and network time to none (measured MFU: tools.accelerator_report)',
           header, '-' * len(header)]
  for r in records:
    mem, cost, roof = r.get('memory') or {}, r.get('cost') or {}, r.get('roofline') or {}
    fits = {True: 'yes', False: 'NO', None: '?'}[mem.get('fits')]
    flops = roof.get('compute_flops') or cost.get('flops')
    acc, step = cost.get('bytes_accessed'), roof.get('step_s')
    sent = (r.get('collectives') or {}).get('sent_bytes')
    out = (None if mem.get('output_bytes') is None else
           mem['output_bytes'] - (mem.get('alias_bytes') or 0))
    lines.append(
        f"{r['name'][:width]:<{width}} {_gib(mem.get('argument_bytes')):>7} "
        f"{_gib(mem.get('temp_bytes')):>7} "
        f"{_gib(out):>7} {_gib(mem.get('total_bytes')):>7} "
        f"{_gib(mem.get('hbm_bytes')):>7} {fits:>4} "
        f"{'-' if flops is None else f'{flops / 1e12:.3f}':>8} "
        f"{'-' if acc is None else f'{acc / 1e9:.2f}':>8} "
        f"{'-' if sent is None else f'{sent / 1e9:.2f}':>8} "
        f"{_range(step, roof.get('serial_s'), lambda t: f'{t * 1e3:.1f}'):>13} "
        f"{roof.get('bound') or '-':>7} "
        f"{_range(roof.get('mfu_serial'), roof.get('mfu'), lambda m: f'{m:.0%}'):>9} "
        f"{_range(roof.get('hfu_serial'), roof.get('hfu'), lambda m: f'{m:.0%}'):>9}")
  return '\n'.join(lines)


def verdicts(records: list[dict]) -> list[str]:
  """One sentence per function that does not fit: by how much, and which memory dominates."""
  out = []
  for r in records:
    mem = r.get('memory') or {}
    if mem.get('fits') is False:
      margin = mem.get('margin_bytes')
      over = '' if margin is None else f' by {-margin / 2**30:.2f} GiB'
      out.append(f"{r['name']} does not fit in {r['chip']} HBM{over} "
                 f"(needs {_gib(mem.get('total_bytes'))} of {_gib(mem.get('hbm_bytes'))} GiB per "
                 f"device; largest part: {mem.get('dominant')}).")
    elif r.get('cost', {}).get('loops_counted_once'):
      out.append(f"{r['name']}: XLA cost analysis counts loop bodies once, so its bytes accessed "
                 '(and its own FLOPs, where the traced count is not given) are lower bounds.')
  return out
