"""Interconnect time of a step's collectives, each over the links its group actually uses.

A collective over one mesh axis travels on that axis's links only. On a TPU torus its group
spans some physical dimensions; per spanned dimension a ring uses 2 links (both neighbours)
where the dimension wraps around and 1 where it does not, each carrying `chip.link_bandwidth`
bytes/s each way. On a switched fabric (NVLink + NVSwitch) any group reaches all of a GPU's
links. Where device coordinates are unknown (CPU) every link is assumed to take part.

With several slices (`--num_slices > 1`) XLA splits a collective over `data` into one inside
each slice (ICI) and a megascale transfer across slices, timed at the host's data-center network
(DCN) bandwidth shared by its chips. A replica group that itself crosses slices (not what XLA
emits for TPU, kept for completeness) is timed as the same hierarchy.
Collectives are summed one after another: the network term of the roofline.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from mmjax.plan import hlo_collectives
from mmjax.plan.hardware import Chip


@dataclasses.dataclass(frozen=True)
class Fabric:
  """What timing a collective needs: the program's devices in partition order (e.g.
  `mesh.devices.flat`), the torus wrap-around per physical dimension, and the chip."""
  devices: Sequence
  chip: Chip
  wrap: tuple[bool, ...] = ()


def _slice(device) -> int:
  return int(getattr(device, 'slice_index', 0) or 0)


def ici_links(devices: Sequence, chip: Chip, wrap: tuple[bool, ...]) -> int:
  """Links per chip a ring over `devices` (one slice) uses: see the module docstring."""
  coords = [getattr(d, 'coords', None) for d in devices]
  if chip.switched or any(c is None for c in coords) or not coords:
    return chip.interconnect_links or 1
  spanned = [dim for dim in range(len(coords[0])) if len({c[dim] for c in coords}) > 1]
  return max(1, sum(2 if dim < len(wrap) and wrap[dim] else 1 for dim in spanned))


def split_bytes(kind: str, nbytes: float, in_slice: int, slices: int) -> tuple[float, float]:
  """-> (ICI, DCN) bytes one device sends for a collective whose group has `in_slice` members
  in each of `slices` slices (`nbytes`: `hlo_collectives.unit_bytes`), done hierarchically."""
  n = in_slice * slices
  send = hlo_collectives.sent_bytes
  if slices == 1:
    return send(kind, nbytes, n), 0.0
  ici = send(kind, nbytes, in_slice) if in_slice > 1 else 0.0
  if kind == 'all-reduce':  # reduce-scatter in the slice, all-reduce of 1/in_slice across
    return ici, send(kind, nbytes / in_slice, slices)
  if kind == 'all-gather':  # gather own shard across slices, then the slice's blocks inside
    return ici, nbytes / n * (slices - 1)
  if kind == 'reduce-scatter':  # input n results: in-slice keeps `slices` results, then across
    return (send(kind, nbytes * slices, in_slice) if in_slice > 1 else 0.0,
            send(kind, nbytes, slices))
  if kind == 'all-to-all':  # each peer gets 1/n; those in other slices go over DCN
    return nbytes * (in_slice - 1) / n, nbytes * (n - in_slice) / n
  return 0.0, nbytes  # collective-permute across slices


def collective_seconds(c: hlo_collectives.Collective, fabric: Fabric) -> tuple[float, float]:
  """-> (ICI seconds, DCN seconds) of one execution of collective `c` (one device's view).
  A time is inf where the bytes must cross a fabric whose bandwidth is unknown."""
  chip, devices = fabric.chip, list(fabric.devices)
  if c.over_dcn:  # a megascale transfer: this device's buffer across every slice
    slices = len({_slice(d) for d in devices}) or 1
    sent = hlo_collectives.dcn_bytes(c.kind, hlo_collectives.array_bytes(c.shape), slices)
    dcn = chip.dcn_bandwidth_per_chip
    return 0.0, (sent / dcn if dcn else float('inf')) if sent else 0.0
  members = [devices[i] for i in c.group if i < len(devices)] if c.group else devices
  members = members or devices
  first_slice = _slice(members[0]) if members else 0
  local = [d for d in members if _slice(d) == first_slice]
  slices = len({_slice(d) for d in members}) or 1
  nbytes = hlo_collectives.unit_bytes(c.kind, c.shape)
  ici_bytes, dcn_bytes = split_bytes(c.kind, nbytes, max(len(local), 1), slices)
  if c.kind == 'collective-permute' and slices == 1:
    links = 1  # one buffer to one peer
  else:
    links = ici_links(local, chip, fabric.wrap)
  link = chip.link_bandwidth
  ici_s = 0.0 if not ici_bytes else (ici_bytes / (links * link) if link else float('inf'))
  dcn = chip.dcn_bandwidth_per_chip
  dcn_s = 0.0 if not dcn_bytes else (dcn_bytes / dcn if dcn else float('inf'))
  return ici_s, dcn_s


def network_seconds(found: hlo_collectives.Collectives, fabric: Fabric) -> dict:
  """Per-step ICI and DCN seconds of all collectives (each times its runs), and their sum."""
  ici = dcn = 0.0
  for c in found.instructions:
    i, d = collective_seconds(c, fabric)
    ici, dcn = ici + i * c.runs, dcn + d * c.runs
  return {'ici_s': ici, 'dcn_s': dcn, 'network_s': ici + dcn}
