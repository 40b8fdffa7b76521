"""Long-input encoder benchmark: attention, Mamba, Mixture-of-Mamba and MAELRE side by side.

  nice -n 10 python -m tools.bench_long_range --lengths=256,1024,4096,16384 --out=bench.json \
      --plot=bench.png

Each encoder has the same width, depth and MLP (the tiny preset: 4 blocks, width 128, 4 heads,
MLP 512) and runs one training step's worth of work on `[batch, length, width]` random tokens:
value and gradient of a mean-square loss over all parameters, jitted. Per (encoder, length):

- model FLOPs of the step (`mmjax.plan.flop_count.count_model_flops`: matmuls, the selective
  scan at 9 FLOPs per state element forward and 18 backward, attention as its mathematics);
- step time: median of `--steps` runs, compile excluded (CPU timings on a shared machine are
  noisy; compare within one run);
- memory: XLA's compiled estimate, arguments + outputs + temporaries (`memory_analysis`); a
  case whose estimate exceeds `--max_gb` is reported and not run.

Encoders: `attention` (the plain encoder, XLA softmax attention), `mamba` (every block a
bidirectional Mamba block), `mom` (Mixture-of-Mamba over a fused sequence of two modalities,
half the tokens each), `maelre` (attention blocks, half the tokens merged after blocks 0, 1 and
2, linear attention in blocks reading more than 1024 tokens).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ENCODERS = ('attention', 'mamba', 'mom', 'maelre')


def model_cfg(kind: str):
  from mmjax.config.defaults import model_config
  from mmjax.core.presets import SIZES
  m = model_config()
  for k, v in SIZES['tiny'].items():
    m[k] = v
  m.attention_impl = 'xla'
  m.mamba.impl = 'xla'
  if kind in ('mamba', 'mom'):
    m.layer_types = ('mamba',)
  if kind == 'mom':
    m.moe.mixture_of_transformers = True
    m.moe.impl = 'xla'
  if kind == 'maelre':
    m.maelre.merge_after = (0, 1, 2)
    m.maelre.merge_ratio = 0.5
    m.maelre.linear_above = 1024
  return m


def build(kind: str):
  """-> (graphdef, params state, apply(state, x, mask) -> [b, l, w])."""
  from flax import nnx
  from mmjax.models.encoder import Encoder
  from mmjax.models.mixture_of_mamba import MixtureOfMambaEncoder
  from mmjax.models.token_merging import MaelreEncoder
  cfg = model_cfg(kind)
  rngs = nnx.Rngs(0)
  if kind == 'mom':
    enc = MixtureOfMambaEncoder(cfg, ('image', 'audio'), rngs=rngs, dtype=jnp.float32)
  elif kind == 'maelre':
    enc = MaelreEncoder(cfg, rngs=rngs, dtype=jnp.float32)
  else:
    enc = Encoder(cfg, rngs=rngs, dtype=jnp.float32)
  graphdef, state = nnx.split(enc)

  def apply(state, x, mask):
    model = nnx.merge(graphdef, state)
    if kind == 'mom':
      half = x.shape[1] // 2
      ids = (jnp.arange(x.shape[1]) >= half).astype(jnp.int32)[None].repeat(x.shape[0], 0)
      return model(x, mask, ids)[0]
    return model(x, mask)[0]
  return cfg, state, apply


def bench_one(kind: str, length: int, batch: int, steps: int, max_gb: float) -> dict:
  from mmjax.plan import flop_count
  cfg, state, apply = build(kind)

  def loss(state, x, mask):
    return jnp.mean(jnp.square(apply(state, x, mask).astype(jnp.float32)))

  step = jax.jit(jax.value_and_grad(loss))
  x = jax.ShapeDtypeStruct((batch, length, cfg.width), jnp.float32)
  mask = jax.ShapeDtypeStruct((batch, length), jnp.int32)
  flops = flop_count.count_model_flops(lambda: step.trace(state, x, mask)).flops
  t0 = time.perf_counter()
  compiled = step.lower(state, x, mask).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  mem_bytes = None
  if mem is not None:
    mem_bytes = int(mem.argument_size_in_bytes + mem.output_size_in_bytes
                    + mem.temp_size_in_bytes)
  row = dict(encoder=kind, length=length, batch=batch, model_flops=flops, compile_s=compile_s,
             memory_bytes=mem_bytes, step_s=None, skipped='')
  if mem_bytes is not None and mem_bytes > max_gb * 2 ** 30:
    row['skipped'] = f'memory estimate {mem_bytes / 2 ** 30:.1f} GiB > --max_gb={max_gb}'
    return row
  rng = np.random.default_rng(0)
  xs = jnp.asarray(rng.standard_normal((batch, length, cfg.width)), jnp.float32)
  ms = jnp.ones((batch, length), jnp.int32)
  jax.block_until_ready(compiled(state, xs, ms))
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(state, xs, ms))
    times.append(time.perf_counter() - t0)
  row['step_s'] = statistics.median(times)
  return row


def table(rows) -> str:
  lines = [f'| encoder | length | GFLOP/step | step ms | memory MiB |',
           '|---|---:|---:|---:|---:|']
  for r in rows:
    ms = f'{1e3 * r["step_s"]:.0f}' if r['step_s'] is not None else f'skipped ({r["skipped"]})'
    mem = f'{r["memory_bytes"] / 2 ** 20:.0f}' if r['memory_bytes'] is not None else '?'
    lines.append(f'| {r["encoder"]} | {r["length"]} | {r["model_flops"] / 1e9:.2f} | {ms} | '
                 f'{mem} |')
  return '\n'.join(lines)


def plot(rows, path: str) -> None:
  import matplotlib  # optional heavy dependency, only for --plot
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # optional heavy dependency, only for --plot
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
  for kind in ENCODERS:
    rs = [r for r in rows if r['encoder'] == kind]
    if not rs:
      continue
    ls = [r['length'] for r in rs]
    axes[0].plot(ls, [r['model_flops'] / 1e9 for r in rs], 'o-', label=kind)
    timed = [r for r in rs if r['step_s'] is not None]
    axes[1].plot([r['length'] for r in timed], [1e3 * r['step_s'] for r in timed], 'o-',
                 label=kind)
    axes[2].plot(ls, [(r['memory_bytes'] or 0) / 2 ** 20 for r in rs], 'o-', label=kind)
  for ax, title in zip(axes, ('model GFLOP / step', 'step ms (CPU)', 'memory MiB (XLA est.)')):
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('tokens')
    ax.set_title(title)
    ax.grid(True, which='both', alpha=0.3)
  axes[0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--lengths', default='256,1024,4096,16384')
  parser.add_argument('--encoders', default=','.join(ENCODERS))
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--max_gb', type=float, default=2.5)
  parser.add_argument('--out', default='')
  parser.add_argument('--plot', default='')
  args = parser.parse_args(argv)
  kinds = args.encoders.split(',')
  bad = [k for k in kinds if k not in ENCODERS]
  if bad:
    print(f'error: unknown --encoders {bad}; choose from {", ".join(ENCODERS)}.',
          file=sys.stderr)
    return 2
  rows = []
  for length in (int(l) for l in args.lengths.split(',')):
    for kind in kinds:
      row = bench_one(kind, length, args.batch, args.steps, args.max_gb)
      rows.append(row)
      print(json.dumps(row), flush=True)
      if args.out:
        with open(args.out, 'w') as f:
          json.dump(rows, f, indent=2)
  print(f'device: {jax.devices()[0].device_kind}')
  print(table(rows))
  if args.plot:
    plot(rows, args.plot)
  return 0


if __name__ == '__main__':
  sys.exit(main())
