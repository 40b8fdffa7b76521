"""Collective communication of a compiled SPMD program, read from its HLO text.

XLA's cost analysis reports FLOPs and HBM bytes but not what crosses the interconnect. This
walks the optimized HLO of one device's partition: every all-gather, reduce-scatter,
all-reduce, all-to-all and collective-permute, with the bytes one device sends for it (ring
algorithms), multiplied by how often it runs — a `while` loop's trip count is read from the
`known_trip_count` XLA annotates, or else from the integer constant its condition compares
against. The totals feed the roofline's
interconnect term (`network.py` times each collective over the links its group uses): a
lower bound, since XLA may overlap collectives with compute.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re

import numpy as np

_DTYPE_BYTES = {'pred': 1, 's4': 0.5, 'u4': 0.5, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2,
                's32': 4, 'u32': 4, 's64': 8, 'u64': 8, 'f16': 2, 'bf16': 2, 'f32': 4, 'f64': 8,
                'c64': 8, 'c128': 16}
_ARRAY = re.compile(r'\b(pred|[su](?:4|8|16|32|64)|bf16|f16|f32|f64|c64|c128|f8e\w+)\[([\d,]*)\]')
_COMPUTATION = re.compile(r'^(ENTRY\s+)?%([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$')
_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*?)\s([\w\-]+)\((.*)$')
_CALLS = re.compile(r'\b(?:body|condition|calls|to_apply|true_computation|false_computation)'
                    r'=%([\w.\-]+)')
_BRANCHES = re.compile(r'branch_computations=\{([^}]*)\}')
_WHILE = re.compile(r'condition=%([\w.\-]+),\s*body=%([\w.\-]+)')
_KNOWN_TRIPS = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
_CONSTANT = re.compile(r'[su](?:32|64)\[\]\S*\s+constant\((\d+)\)')
_MEGASCALE = re.compile(r'_xla_megascale_transfer_type="(\w+)"')
_GROUPS_LIST = re.compile(r'replica_groups=\{\{([\d,]*)\}')
_GROUPS_IOTA = re.compile(r'replica_groups=\[(\d+),(\d+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?')

# op -> how many times its (result) bytes one device sends, given the group size n.
_KINDS = {
    'all-gather': 'all-gather', 'all-gather-start': 'all-gather',
    'all-reduce': 'all-reduce', 'all-reduce-start': 'all-reduce',
    'reduce-scatter': 'reduce-scatter',
    'all-to-all': 'all-to-all', 'ragged-all-to-all': 'all-to-all',
    'collective-permute': 'collective-permute', 'collective-permute-start': 'collective-permute',
}

# Multi-slice programs move cross-slice data with `send`s that the megascale runtime turns into
# a collective over the slices (DCN); the send's operand is this device's buffer.
_MEGASCALE_KINDS = {'ALL_REDUCE': 'all-reduce', 'ALL_GATHER': 'all-gather',
                    'REDUCE_SCATTER': 'reduce-scatter', 'ALL_TO_ALL': 'all-to-all'}


@dataclasses.dataclass(frozen=True)
class Collective:
  """One collective instruction of the program."""
  kind: str  # a value of _KINDS
  shape: str  # its result shape (over DCN: the sent buffer), HLO text
  group: tuple  # the partition ids of its first replica group; () = all devices
  runs: int  # times it executes per step
  over_dcn: bool = False  # a megascale transfer across all slices


@dataclasses.dataclass(frozen=True)
class Collectives:
  """Per-device interconnect traffic of one step."""
  bytes_by_kind: dict  # kind -> bytes one device sends per step
  count_by_kind: dict  # kind -> collectives executed per step
  loop_trip_counts: tuple  # trip count of each while loop (None where it could not be read)
  instructions: tuple = ()  # every Collective, for timing each over its own links

  @property
  def total_bytes(self) -> float:
    return float(sum(self.bytes_by_kind.values()))


def array_bytes(shape_text: str) -> float:
  """Bytes of every array in an HLO shape (`f32[8,128]{1,0}`, or a tuple of them)."""
  return sum(_DTYPE_BYTES.get(dtype, 1) * math.prod(int(d) for d in dims.split(',') if d)
             for dtype, dims in _ARRAY.findall(shape_text))


def _largest_array(shape_text: str) -> float:
  sizes = [_DTYPE_BYTES.get(dt, 1) * math.prod(int(d) for d in dims.split(',') if d)
           for dt, dims in _ARRAY.findall(shape_text)]
  return max(sizes, default=0)


def first_group(attrs: str) -> tuple[int, ...]:
  """Partition ids of the first replica group (`{{0,1},{2,3}}` or the iota form
  `[groups,size]<=[dims]T(perm)`); () when the instruction names none (= all devices)."""
  if (m := _GROUPS_IOTA.search(attrs)):
    groups, size = int(m.group(1)), int(m.group(2))
    dims = [int(d) for d in m.group(3).split(',')]
    ids = np.arange(math.prod(dims)).reshape(dims)
    if m.group(4):
      ids = ids.transpose([int(p) for p in m.group(4).split(',')])
    return tuple(int(i) for i in ids.reshape(groups, size)[0])
  if (m := _GROUPS_LIST.search(attrs)):
    return tuple(int(x) for x in m.group(1).split(',') if x)
  return ()


def dcn_bytes(kind: str, buffer_bytes: float, slices: int) -> float:
  """Bytes one device sends across slices for a megascale transfer of its `buffer_bytes`."""
  if slices <= 1:
    return 0.0
  frac = (slices - 1) / slices
  return buffer_bytes * {'all-reduce': 2 * frac, 'all-gather': slices - 1,
                         'reduce-scatter': frac, 'all-to-all': frac}.get(kind, 1.0)


def unit_bytes(kind: str, shape: str) -> float:
  """The buffer `sent_bytes` scales: the largest array for all-gather and collective-permute,
  all arrays of the result otherwise."""
  return _largest_array(shape) if kind in ('all-gather', 'collective-permute') else array_bytes(shape)


def sent_bytes(kind: str, nbytes: float, n: int) -> float:
  """Bytes one device sends for one collective over a group of `n` (ring algorithms), where
  `nbytes` is its `unit_bytes`."""
  frac = (n - 1) / n if n > 1 else 1.0
  if kind == 'all-gather':  # result is n shards; a device receives (and sends) n-1 of them
    return nbytes * frac
  if kind == 'reduce-scatter':  # input is n result-sized shards
    return nbytes * max(n - 1, 1)
  if kind == 'all-reduce':  # reduce-scatter + all-gather
    return 2.0 * nbytes * frac
  if kind == 'all-to-all':
    return nbytes * frac
  return nbytes  # collective-permute: the whole buffer to one peer


def _parse(hlo_text: str):
  """-> ({computation: [instruction lines]}, entry name)."""
  computations, entry, current = {}, None, None
  for line in hlo_text.splitlines():
    m = _COMPUTATION.match(line)
    if m:
      current = m.group(2)
      computations[current] = []
      if m.group(1):
        entry = current
      continue
    if line.startswith('}'):
      current = None
    elif current is not None:
      computations[current].append(line)
  return computations, entry


def _trip_count(condition_lines) -> int | None:
  constants = [int(c) for line in condition_lines for c in _CONSTANT.findall(line)]
  compares = any('compare' in line for line in condition_lines)  # maybe in a wrapped fusion
  return constants[0] if compares and len(constants) == 1 else None


def _first_operand_shape(operands: str, shapes: dict) -> str:
  """Shape text of an instruction's first operand: written inline (`f32[8,4]{1,0} %x`) or
  looked up by name (`%x`, as optimized HLO prints it)."""
  operands = operands.lstrip()
  inline = _ARRAY.match(operands)
  if inline:
    return inline.group(0)
  ref = re.match(r'%([\w.\-]+)', operands)
  return shapes.get(ref.group(1), '') if ref else ''


def analyze_hlo(hlo_text: str, num_devices: int, num_slices: int = 1) -> Collectives:
  """Collectives of an optimized HLO module (`compiled.as_text()`), per device per step;
  megascale transfers across `num_slices` slices are counted under 'dcn <kind>'."""
  computations, entry = _parse(hlo_text)
  if entry is None:
    return Collectives({}, {}, ())
  # How many times each computation runs per step: sum over call sites, loops multiply.
  edges = collections.defaultdict(list)  # caller -> [(callee, factor)]
  trips = []
  for name, lines in computations.items():
    for line in lines:
      w = _WHILE.search(line)
      if w:
        known = _KNOWN_TRIPS.search(line)
        trip = int(known.group(1)) if known else _trip_count(computations.get(w.group(1), []))
        trips.append(trip)
        edges[name].append((w.group(2), trip or 1))
        edges[name].append((w.group(1), (trip or 1) + 1))
        continue
      op = _INSTRUCTION.match(line)
      if op and op.group(3) in ('async-update', 'async-done'):
        continue  # these name the async-start's computation again; it runs once
      for callee in _CALLS.findall(line):
        edges[name].append((callee, 1))
      for group in _BRANCHES.findall(line):
        for callee in re.findall(r'%([\w.\-]+)', group):
          edges[name].append((callee, 1))
  runs = collections.Counter({entry: 1})
  order, seen = [], set()

  def visit(node):  # callees after callers (HLO call graphs are acyclic)
    if node in seen:
      return
    seen.add(node)
    for callee, _ in edges.get(node, ()):
      visit(callee)
    order.append(node)

  visit(entry)
  for node in reversed(order):
    for callee, factor in edges.get(node, ()):
      runs[callee] += runs[node] * factor
  sent, count, found = collections.Counter(), collections.Counter(), []
  shapes = {m.group(1): m.group(2) for lines in computations.values() for line in lines
            if (m := _INSTRUCTION.match(line))}
  for name, lines in computations.items():
    if not runs.get(name):
      continue
    for line in lines:
      m = _INSTRUCTION.match(line)
      mega = _MEGASCALE.search(line) if m and m.group(3) == 'send' else None
      if mega:
        kind = _MEGASCALE_KINDS.get(mega.group(1), 'collective-permute')
        shape = _ARRAY.search(m.group(2)).group(0) if _ARRAY.search(m.group(2)) else ''
        sent[f'dcn {kind}'] += dcn_bytes(kind, array_bytes(shape), num_slices) * runs[name]
        count[f'dcn {kind}'] += runs[name]
        found.append(Collective(kind, shape, (), runs[name], over_dcn=True))
        continue
      if not m or m.group(3) not in _KINDS:
        continue
      kind, shape, rest = _KINDS[m.group(3)], m.group(2), m.group(4)
      group = first_group(rest)
      n = len(group) or num_devices
      if m.group(3) == 'ragged-all-to-all':   # result = worst-case receive buffer; a device
        send = _first_operand_shape(rest, shapes)   # sends at most its send buffer
        shape = send if send and array_bytes(send) < array_bytes(shape) else shape
      sent[kind] += sent_bytes(kind, unit_bytes(kind, shape), n) * runs[name]
      count[kind] += runs[name]
      found.append(Collective(kind, shape, group, runs[name]))
  return Collectives(dict(sent), dict(count), tuple(trips), tuple(found))
