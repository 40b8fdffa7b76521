"""Per-device grouped computation shared by MoE and MoT: tokens sorted into groups (experts,
modalities) on each device's own examples, then a grouped matmul."""

from __future__ import annotations

import jax
from jax.sharding import PartitionSpec as P

from mmjax.core import partitioning
from mmjax.kernels import ragged_matmul


def per_example_shards(fn, batched, shared):
  """`fn(*batched, *shared)` on each device's own examples. Inside `axis_rules` it runs in
  `shard_map`: `batched` arrays and every output split on their leading (example) axis like
  logical 'batch', `shared` arrays replicated (gathered). Used for sorts and grouped matmuls,
  which GSPMD (and a Pallas kernel) cannot split. Outside a mesh it is just `fn`."""
  ctx = partitioning.current_context()
  if ctx is None:
    return fn(*batched, *shared)
  mesh, rules = ctx
  lead = partitioning.logical_to_spec(('batch',), rules, mesh, batched[0].shape[:1])[0]
  specs = tuple(P(lead) for _ in batched) + tuple(P() for _ in shared)
  return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(lead),
                       check_vma=False)(*batched, *shared)


def grouped_matmul(lhs, rhs, group_sizes, impl: str = 'auto'):
  """`lhs [rows, in]` sorted by group @ `rhs [groups, in, out]` -> `[rows, out]`; rows past
  `sum(group_sizes)` give zeros (`mmjax.kernels.ragged_matmul`)."""
  return ragged_matmul(lhs, rhs, group_sizes, impl=impl)
