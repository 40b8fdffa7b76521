"""Benchmark the Pallas kernels against XLA / cuDNN: time and TFLOP/s, forward and forward+backward.

  python -m tools.bench_kernels --quick --out=/tmp/kernels.json       # CPU smoke run, tiny sizes
  python -m tools.bench_kernels --kernels=flash --lengths=1024,4096 --head_dims=128

Timing: compile and one warm-up call are excluded; each row is the median of --repeats calls,
each ended by block_until_ready. FLOPs count matmuls only (2 per multiply-add); for attention the
backward counts 2.5x the forward (dq, dk, dv, dP; recomputed logits not counted), for the
grouped matmul 2x (d_lhs, d_rhs). Causal attention counts half the dense FLOPs. On CPU
the Pallas kernels run in interpret mode, so sizes default to tiny and the numbers only show
that everything runs.
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.kernels import (attention_reference, flash_attention, grouped_matmul, routed_attention,
                           routed_attention_reference)

KERNELS = ('flash', 'routed', 'gmm')
FULL = dict(lengths='256,512,1024,2048,4096,8192', head_dims='64,128', batch=4, heads=8,
            gmm='8192x1024x4096x8,32768x2048x8192x16', repeats=10, block_size=64, top_k=4)
QUICK = dict(lengths='32,64', head_dims='16', batch=1, heads=2, gmm='64x32x48x4', repeats=2,
             block_size=16, top_k=2)


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--quick', action='store_true', help='tiny sizes (the default on CPU)')
  p.add_argument('--kernels', default=','.join(KERNELS), help=f'subset of {KERNELS}')
  p.add_argument('--lengths', help='sequence lengths, comma separated')
  p.add_argument('--head_dims', help='head dims, comma separated')
  p.add_argument('--batch', type=int)
  p.add_argument('--heads', type=int)
  p.add_argument('--causal', action='store_true', help='causal flash attention')
  p.add_argument('--block_size', type=int, help='routed attention block (tokens)')
  p.add_argument('--top_k', type=int, help='routed key blocks per query block')
  p.add_argument('--gmm', help='grouped matmul shapes MxKxNxGROUPS, comma separated')
  p.add_argument('--dtype', default='bfloat16', choices=('bfloat16', 'float32'))
  p.add_argument('--repeats', type=int)
  p.add_argument('--out', help='write the table as JSON here')
  args = p.parse_args(argv)
  args.kernels = set(args.kernels.split(','))
  if args.kernels - set(KERNELS):
    p.error(f'unknown kernels {sorted(args.kernels - set(KERNELS))}; choose from {KERNELS}')
  args.backend = jax.default_backend()
  args.quick = args.quick or args.backend == 'cpu'
  for name, value in (QUICK if args.quick else FULL).items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  return args


def median_seconds(fn, args, repeats):
  """Median wall time of `fn(*args)` over `repeats` calls after compile + one warm-up."""
  fn = jax.jit(fn)
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def with_backward(fn):
  """fn(*xs) -> its output and the gradients of the output against a fixed cotangent."""
  def run(*xs):
    out, vjp = jax.vjp(fn, *xs)
    return out, vjp(jnp.ones_like(out))
  return run


def measure(rows, args, kernel, impl, shape, fn, inputs, fwd_flops, note='', total_factor=3.5):
  """Appends one row per pass for `fn`; forward+backward counts total_factor x the FLOPs."""
  for label, f, flops in (('fwd', fn, fwd_flops),
                          ('fwd+bwd', with_backward(fn), total_factor * fwd_flops)):
    row = dict(kernel=kernel, impl=impl, shape=shape, passes=label, ms=None, tflops=None,
               note=note)
    if not note:
      try:
        seconds = median_seconds(f, inputs, args.repeats)
        row.update(ms=float(f'{seconds * 1e3:.4g}'), tflops=float(f'{flops / seconds / 1e12:.4g}'))
      except Exception as e:  # pylint: disable=broad-except  (e.g. out of memory at 8k)
        row['note'] = f'{type(e).__name__}: {str(e).splitlines()[0][:100]}'
    rows.append(row)


def _qkv(batch, length, heads, head_dim, dtype, seed=0):
  rng = np.random.default_rng(seed)
  return [jnp.asarray(rng.standard_normal((batch, length, heads, head_dim), np.float32), dtype)
          for _ in range(3)]


def bench_attention(args, rows, dtype):
  on_gpu = args.backend == 'gpu'
  for length in map(int, args.lengths.split(',')):
    for head_dim in map(int, args.head_dims.split(',')):
      qkv = _qkv(args.batch, length, args.heads, head_dim, dtype)
      shape = f'b{args.batch} L{length} h{args.heads} d{head_dim}'
      dense = 4.0 * args.batch * args.heads * length * length * head_dim
      if 'flash' in args.kernels:
        flops = dense / 2 if args.causal else dense
        causal = args.causal
        measure(rows, args, 'attention', 'pallas', shape,
                lambda q, k, v: flash_attention(q, k, v, causal=causal), qkv, flops)
        measure(rows, args, 'attention', 'xla', shape,
                lambda q, k, v: attention_reference(q, k, v, causal=causal), qkv, flops)
        measure(rows, args, 'attention', 'cudnn', shape,
                lambda q, k, v: jax.nn.dot_product_attention(
                    q, k, v, is_causal=causal, implementation='cudnn'), qkv, flops,
                note='' if on_gpu else f'skipped: cuDNN needs a GPU (backend {args.backend})')
      if 'routed' in args.kernels:
        block = min(args.block_size, length)
        top_k = min(args.top_k, length // block)
        if length % block:
          continue
        routed = dense * top_k * block / length
        r_shape = f'{shape} block{block} top{top_k}'
        kw = dict(block_size=block, top_k=top_k)
        measure(rows, args, 'routed', 'pallas', r_shape,
                lambda q, k, v: routed_attention(q, k, v, **kw), qkv, routed)
        measure(rows, args, 'routed', 'xla-gather', r_shape,
                lambda q, k, v: routed_attention_reference(q, k, v, **kw), qkv, routed)
        measure(rows, args, 'routed', 'dense-pallas', r_shape, flash_attention, qkv, dense)
        measure(rows, args, 'routed', 'dense-xla', r_shape, attention_reference, qkv, dense)


def bench_gmm(args, rows, dtype):
  for spec in args.gmm.split(','):
    m, k, n, groups = map(int, spec.lower().split('x'))
    rng = np.random.default_rng(0)
    sizes = rng.multinomial(m, rng.dirichlet(np.ones(groups))).astype(np.int32)
    lhs = jnp.asarray(rng.standard_normal((m, k), np.float32), dtype)
    rhs = jnp.asarray(rng.standard_normal((groups, k, n), np.float32) / np.sqrt(k), dtype)
    group_sizes = jnp.asarray(sizes)
    flops = 2.0 * m * k * n
    shape = f'm{m} k{k} n{n} g{groups}'
    kw = dict(total_factor=3.0)   # backward: d_lhs and d_rhs, one matmul each
    measure(rows, args, 'gmm', 'pallas', shape,
            lambda a, b: grouped_matmul(a, b, group_sizes), (lhs, rhs), flops, **kw)
    measure(rows, args, 'gmm', 'ragged_dot', shape,
            lambda a, b: jax.lax.ragged_dot(a, b, group_sizes), (lhs, rhs), flops, **kw)
    measure(rows, args, 'gmm', 'dense-matmul', shape, lambda a, b: a @ b, (lhs, rhs[0]), flops,
            **kw)


def print_table(rows):
  cols = ('kernel', 'impl', 'shape', 'passes', 'ms', 'tflops', 'note')
  cells = [[('' if r[c] is None else str(r[c])) for c in cols] for r in rows]
  widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
  print('  '.join(c.ljust(w) for c, w in zip(cols, widths)))
  for row in cells:
    print('  '.join(v.ljust(w) for v, w in zip(row, widths)))


def main(argv=None):
  args = parse_args(argv)
  dtype = jnp.dtype(args.dtype)
  device = jax.devices()[0].device_kind
  print(f'backend {args.backend} ({device}), dtype {args.dtype}, repeats {args.repeats}')
  if args.backend == 'cpu':
    print('note: CPU run -- Pallas kernels run in interpret mode on tiny sizes; the timings only '
          'show that the benchmark works, not kernel speed.')
  rows = []
  if {'flash', 'routed'} & args.kernels:
    bench_attention(args, rows, dtype)
  if 'gmm' in args.kernels:
    bench_gmm(args, rows, dtype)
  print_table(rows)
  if args.out:
    meta = dict(backend=args.backend, device=device, jax=jax.__version__, dtype=args.dtype,
                quick=args.quick, causal=args.causal, repeats=args.repeats)
    with open(args.out, 'w') as f:
      json.dump(dict(meta=meta, rows=rows), f, indent=1)
    print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
