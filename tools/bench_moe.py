"""MoE layer benchmark: dispatch memory against token count, and step time against a dense MLP.

  python -m tools.bench_moe
  python -m tools.bench_moe --tokens=1024,4096,16384 --width=256 --mlp_dim=1024 --experts=8 \
      --top_k=1 --reps=3 --out=bench_moe.json
  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
      python -m tools.bench_moe --mesh --experts_list=4,8,16,32,64 --tokens=512 --top_k=2

With `--mesh`: expert-parallel dropless vs tokens-choose vs dense on a mesh of all devices,
step time and per-device peak memory as the number of experts grows (`tools/bench_moe_mesh.py`);
`--tokens` is then the tokens per device.

Memory: XLA's compiled `memory_analysis()` temp bytes of the jitted forward pass, for the MoE
layer (scatter/gather dispatch into `[experts, capacity, embed]`) and for the same layer written
with GShard-style one-hot `[tokens, experts, capacity]` dispatch/combine tensors; capacity grows
with tokens, so the one-hot form grows with tokens^2 while ours stays linear. Time: forward +
backward of the MoE layer (tokens_choose, dropless) against a dense MLP of the same active FLOPs
(hidden size top_k * mlp_dim), one routing group of `tokens` tokens, median of `--reps` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.config.defaults import model_config
from mmjax.models.moe import layer as moe_lib
from mmjax.models.mlp import Mlp
from . import bench_moe_mesh   # relative: `tools` in the checkout, `mmjax.tools` installed


def layer_config(width, mlp_dim, experts, top_k, router, capacity_factor=1.25):
  cfg = model_config()
  cfg.width, cfg.mlp_dim, cfg.num_layers, cfg.num_heads = width, mlp_dim, 1, 1
  with cfg.moe.unlocked():
    cfg.moe.update(dict(num_experts=experts, top_k=top_k, every=1, router=router,
                        capacity_factor=capacity_factor))
  return cfg


def onehot_forward(layer: moe_lib.MoeMlp, x: jax.Array) -> jax.Array:
  """The same tokens_choose layer with one-hot `[tokens, experts, capacity]` dispatch (GShard)."""
  tokens, e, k = x.shape[1], layer.num_experts, layer.top_k
  cap = moe_lib.expert_capacity(tokens, e, k, layer.capacity_factor)
  logits = layer.router_logits(x)[0]
  index, combine, position = moe_lib.route_tokens_choose(logits, k, cap)
  slot = jax.nn.one_hot(index, e)[..., None] * jax.nn.one_hot(position, cap)[:, :, None, :]
  dispatch, weights = slot.sum(1), (slot * combine[..., None, None]).sum(1)   # [tokens, e, cap]
  buf = jnp.einsum('tec,td->ecd', dispatch, x[0])[:, None]
  out = layer._experts(buf.transpose(1, 0, 2, 3))[0]  # pylint: disable=protected-access
  return jnp.einsum('tec,ecd->td', weights, out)[None]


def temp_bytes(fn, *args) -> int:
  return int(jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes)


def step_time(module, x, reps: int) -> float:
  """Median seconds of one jitted forward + backward (grads of params and input)."""
  graphdef, params = nnx.split(module)

  def loss(p, x):
    y, _ = nnx.merge(graphdef, p)(x)
    return jnp.sum(y.astype(jnp.float32) ** 2)
  fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
  jax.block_until_ready(fn(params, x))
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(fn(params, x))
    times.append(time.perf_counter() - t)
  return sorted(times)[len(times) // 2]


def run(args) -> list[dict]:
  rows = []
  rngs = nnx.Rngs(0)
  moe_layer = moe_lib.MoeMlp(layer_config(args.width, args.mlp_dim, args.experts, args.top_k,
                                          'tokens_choose'), rngs=rngs, dtype=jnp.float32)
  dropless = moe_lib.MoeMlp(layer_config(args.width, args.mlp_dim, args.experts, args.top_k,
                                         'dropless'), rngs=rngs, dtype=jnp.float32)
  dense = Mlp(args.width, args.top_k * args.mlp_dim, rngs=rngs, dtype=jnp.float32)
  for tokens in args.tokens:
    x = jax.random.normal(jax.random.key(tokens), (1, tokens, args.width), jnp.float32)
    cap = moe_lib.expert_capacity(tokens, args.experts, args.top_k, 1.25)
    row = {'tokens': tokens, 'capacity': cap,
           'onehot_dispatch_bytes': 4 * tokens * args.experts * cap,
           'moe_temp_bytes': temp_bytes(lambda x: moe_layer(x)[0], x),
           'onehot_temp_bytes': temp_bytes(lambda x: onehot_forward(moe_layer, x), x),
           'dense_temp_bytes': temp_bytes(lambda x: dense(x)[0], x)}
    if args.reps:
      row.update(moe_step_s=step_time(moe_layer, x, args.reps),
                 dropless_step_s=step_time(dropless, x, args.reps),
                 dense_step_s=step_time(dense, x, args.reps))
    rows.append(row)
    print(f'measured {tokens} tokens', file=sys.stderr, flush=True)
  return rows


def table(rows: list[dict]) -> str:
  mib = lambda b: f'{b / 2**20:9.1f}'
  lines = [f'{"tokens":>7} {"cap":>5} {"moe MiB":>9} {"one-hot MiB":>11} {"dense MiB":>9} '
           f'{"moe ms":>8} {"dropless ms":>11} {"dense ms":>8} {"moe/dense":>9}']
  for r in rows:
    t = (f'{1e3 * r["moe_step_s"]:8.1f} {1e3 * r["dropless_step_s"]:11.1f} '
         f'{1e3 * r["dense_step_s"]:8.1f} {r["moe_step_s"] / r["dense_step_s"]:9.2f}'
         if 'moe_step_s' in r else '')
    lines.append(f'{r["tokens"]:7d} {r["capacity"]:5d} {mib(r["moe_temp_bytes"])} '
                 f'{mib(r["onehot_temp_bytes"]):>11} {mib(r["dense_temp_bytes"])} {t}')
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m tools.bench_moe',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--tokens', default='1024,4096,16384', help='comma-separated token counts')
  parser.add_argument('--width', type=int, default=256)
  parser.add_argument('--mlp_dim', type=int, default=1024)
  parser.add_argument('--experts', type=int, default=8)
  parser.add_argument('--top_k', type=int, default=1)
  parser.add_argument('--reps', type=int, default=3, help='timed runs per layer (0: memory only)')
  parser.add_argument('--out', default=None, help='also write the JSON here')
  parser.add_argument('--mesh', action='store_true', help='expert-parallel comparison on a mesh')
  parser.add_argument('--experts_list', default='4,8,16,32,64', help='with --mesh')
  args = parser.parse_args(argv)
  args.tokens = [int(t) for t in args.tokens.split(',') if t]
  report = {'device': jax.devices()[0].device_kind, 'backend': jax.default_backend(),
            'devices': jax.device_count(), 'width': args.width, 'mlp_dim': args.mlp_dim,
            'top_k': args.top_k, 'capacity_factor': 1.25}
  if args.mesh:
    experts = [int(e) for e in args.experts_list.split(',') if e]
    bad = [e for e in experts if e < args.top_k]
    if bad or len(args.tokens) != 1:
      print(f'--experts_list needs every count >= --top_k={args.top_k} and --tokens one count '
            f'(tokens per device) with --mesh; got {experts} and {args.tokens}.', file=sys.stderr)
      return 2
    rows = bench_moe_mesh.mesh_rows(experts, tokens=args.tokens[0], width=args.width,
                                    mlp_dim=args.mlp_dim, top_k=args.top_k, reps=args.reps,
                                    layer_config=layer_config)
    print(bench_moe_mesh.mesh_table(rows))
  else:
    rows = run(args)
    report['experts'] = args.experts
    print(table(rows))
  report['rows'] = rows
  print(json.dumps(report, indent=2))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(report, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
