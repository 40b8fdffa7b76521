"""MoE on a mesh: expert-parallel dropless vs tokens-choose vs a dense MLP of equal active FLOPs.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
      python -m tools.bench_moe --mesh --experts_list=4,8,16,32,64 --out=bench_moe_mesh.json

For each expert count the devices form a mesh `expert = gcd(experts, devices)`, `data` = the
rest; examples are split over all devices, expert weights over `expert` (logical axis rules of
`mmjax.core.partitioning`). Each layer's jitted forward + backward (grads of params and input)
is compiled once: `peak` is XLA's per-device `memory_analysis()` (arguments + outputs + temps,
minus aliased), time the median of `--reps` runs. Every token's active FLOPs are the same in
all three: top_k experts of `mlp_dim`, or one dense MLP of `top_k * mlp_dim`. On simulated CPU
devices the times measure the extra work of routing (sorts, scatters, all-to-all copies), not
interconnect bandwidth. Read dropless on CPU with care: XLA:CPU expands `ragged_dot` densely
(time and temporaries grow as groups x rows), and the CPU's all-to-all send and receive buffers
are sized for the worst case (expert axis x claims rows, `mmjax/models/moe/expert_exchange.py`), so
its cost here grows with the local experts; on TPU and GPU `ragged_all_to_all` sends only the
claims, and the Pallas grouped matmul on TPU visits only row tiles that hold tokens.
"""

from __future__ import annotations

import math
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mmjax.core import partitioning
from mmjax.models.moe import layer as moe_lib
from mmjax.models.mlp import Mlp
from mmjax.train.state import logical_axes


def _module(factory, seed: int):
  """`factory()`'s module with N(0, 0.02^2) parameters drawn in numpy (no init compile)."""
  graphdef, state = nnx.split(nnx.eval_shape(factory))
  rng = np.random.default_rng(seed)
  nnx.replace_by_pure_dict(state, jax.tree.map(
      lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.02, a.dtype), nnx.to_pure_dict(state)))
  return nnx.merge(graphdef, state)


def measure(module, x, mesh, reps: int) -> dict:
  """`{'step_s', 'peak_bytes'}` of forward + backward of `module` on `x`, sharded on `mesh`."""
  graphdef, state = nnx.split(module)
  rules = partitioning.DEFAULT_RULES
  params = nnx.to_pure_dict(state)
  shard = jax.tree.map(lambda p, a: partitioning.named_sharding(mesh, a, rules, p.shape),
                       params, logical_axes(state), is_leaf=lambda t: isinstance(t, tuple))
  params = jax.device_put(params, shard)
  x = jax.device_put(x, partitioning.batch_sharding(mesh))

  def loss(p, x):
    with partitioning.axis_rules(mesh, rules):
      y, _ = nnx.merge(graphdef, p)(x)
    return jnp.sum(y.astype(jnp.float32) ** 2)
  compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile()
  mem = compiled.memory_analysis()
  peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
          - mem.alias_size_in_bytes)
  jax.block_until_ready(compiled(params, x))
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(compiled(params, x))
    times.append(time.perf_counter() - t)
  return {'step_s': sorted(times)[len(times) // 2], 'peak_bytes': int(peak)}


def mesh_rows(experts_list, *, tokens, width, mlp_dim, top_k, reps, layer_config) -> list[dict]:
  """One row per expert count; `tokens` per device, `layer_config(...)` as in bench_moe."""
  devices = jax.device_count()
  length = 128
  x = jax.random.normal(jax.random.key(0), (devices * max(1, tokens // length), length, width))
  rows = []
  for e in experts_list:
    ep = math.gcd(e, devices)
    mesh = partitioning.make_mesh(ml_collections.ConfigDict(
        dict(data=devices // ep, fsdp=1, tensor=1, expert=ep)))
    row = {'experts': e, 'expert_axis': ep}
    for router in ('dropless', 'tokens_choose'):
      cfg = layer_config(width, mlp_dim, e, top_k, router)
      layer = _module(lambda: moe_lib.MoeMlp(cfg, rngs=nnx.Rngs(0), dtype=jnp.float32), e)
      row[router] = measure(layer, x, mesh, reps)
    dense = _module(lambda: Mlp(width, top_k * mlp_dim, rngs=nnx.Rngs(0), dtype=jnp.float32), 0)
    row['dense'] = measure(dense, x, mesh, reps)
    rows.append(row)
    print(f'measured {e} experts', file=sys.stderr, flush=True)
  return rows


def mesh_table(rows: list[dict]) -> str:
  kinds = ('dropless', 'tokens_choose', 'dense')
  head = f'{"experts":>7} {"ep":>3} ' + ' '.join(f'{k + " ms":>17} {k + " MiB":>18}'
                                                 for k in kinds)
  lines = [head]
  for r in rows:
    cells = ' '.join(f'{1e3 * r[k]["step_s"]:17.1f} {r[k]["peak_bytes"] / 2**20:18.2f}'
                     for k in kinds)
    lines.append(f'{r["experts"]:7d} {r["expert_axis"]:3d} {cells}')
  return '\n'.join(lines)
