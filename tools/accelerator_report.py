"""One command that measures a GPU or TPU: kernels checked compiled, attention and grouped-matmul
speed, train-step time and MFU, and the input pipeline's rate against it.

  python -m tools.accelerator_report --out=DIR                 # one GPU or TPU host, < 8 min
  python -m tools.accelerator_report --out=DIR --tiny          # CPU / CI: tiny shapes (the
                                                               # default on a CPU backend)

Writes DIR/accelerator_report.json and DIR/accelerator_report.md. Sections:

- `kernels`: flash attention (padding as lengths, packed segments, grouped-query, causal), routed
  attention and the grouped matmul, compiled for the device (interpret mode on a CPU), forward
  and gradients against their pure-JAX references; with `--pytest`, also `tests/kernels` run on
  the device (its pass/fail counts).
- `attention`: flash (Pallas) vs cuDNN vs XLA, TFLOP/s forward and forward+backward at 1k, 4k
  and 8k tokens (ViT-B heads: 12 x 64); cuDNN is skipped off GPU, with a note.
- `grouped_matmul`: the Pallas grouped matmul vs `jax.lax.ragged_dot` (and a dense matmul).
- `train_step`: `imp_base` dense and `imp_moe_base` MoE (data-parallel over the host's devices,
  expert axis 1) on the image-text task at the largest batch the device's memory takes (from a compiled
  probe's memory analysis, halved on out-of-memory): step time, examples/s, model FLOPs, MFU
  against the datasheet peak (`mmjax/plan/hardware.py`).
- `input_pipeline`: the grain loader of `mmjax_digits` (built locally on first use into
  `--data_dir`, default DIR/tfds) at the step's image size and batch: examples/s and the headroom
  over the dense step (loader / step examples/s; above 1 the loader keeps up). Digits decode
  cheaply; real JPEG pipelines are slower (`python -m tools.bench_data --real`).

Timing as `tools/bench_kernels.py`: compile and one warm-up excluded, median of repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from . import bench_kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ('kernels', 'attention', 'grouped_matmul', 'train_step', 'input_pipeline')
FULL = dict(lengths=(1024, 4096, 8192), tokens=16384, heads=12, head_dim=64, repeats=10,
            gmm=((16384, 768, 3072, 8), (32768, 1024, 4096, 16)),
            configs=(('dense', 'imp_base.py', 'coco_image_text'),
                     ('moe', 'imp_moe_base.py', 'coco_image_text')),
            probe_batch=32, max_batch=4096, steps=10, pipeline_batches=30, check_length=512)
TINY = dict(lengths=(32,), tokens=32, heads=2, head_dim=16, repeats=1, gmm=((64, 32, 48, 4),),
            configs=(('dense', 'demo.py', 'image_text'), ('moe', 'demo_moe.py', 'image_text')),
            probe_batch=8, max_batch=8, steps=1, pipeline_batches=2, check_length=40)
TINY_OVERRIDES = ('--config.model.num_layers=1', '--config.model.moe.every=1')   # MoE: 1 layer


def parse_args(argv):
  p = argparse.ArgumentParser(prog='python -m tools.accelerator_report',
                              description=__doc__.split('\n')[0])
  p.add_argument('--out', required=True, help='directory for the JSON and markdown report')
  p.add_argument('--tiny', action='store_true', help='tiny shapes (default on a CPU backend)')
  p.add_argument('--skip', default='', help=f'comma-separated sections to skip: {SECTIONS}')
  p.add_argument('--data_dir', default='', help='where mmjax_digits is (built if missing); '
                 'default OUT/tfds')
  p.add_argument('--pytest', action='store_true', help='also run tests/kernels on the device')
  args = p.parse_args(argv)
  skip = {s for s in args.skip.split(',') if s}
  if skip - set(SECTIONS):
    p.error(f'unknown sections {sorted(skip - set(SECTIONS))}; choose from {SECTIONS}')
  args.skip = skip
  args.backend = jax.default_backend()
  args.tiny = args.tiny or args.backend == 'cpu'
  args.shapes = TINY if args.tiny else FULL
  return args


# -- kernels compiled for the device --------------------------------------------------------------


def _max_err(a, b):
  return float(jnp.max(jnp.abs(jnp.asarray(a, jnp.float32) - jnp.asarray(b, jnp.float32))))


def _grads(fn, *xs):
  out, vjp = jax.vjp(fn, *xs)
  return (out,) + vjp(jnp.cos(out.astype(jnp.float32)).astype(out.dtype))


def kernel_checks(shapes, backend) -> list[dict]:
  """Each kernel compiled for `backend` (interpret on CPU), forward and gradients against its
  reference in float32: the largest absolute difference and pass/fail at 2e-3 (routed attention
  with the full shapes only)."""
  from mmjax.kernels import (attention_reference, flash_attention, grouped_matmul,
                             grouped_matmul_reference, routed_attention,
                             routed_attention_reference)
  rng = np.random.default_rng(0)
  length = shapes['check_length']
  normal = lambda *s: jnp.asarray(rng.standard_normal(s, np.float32))
  q, k, v = normal(2, length, 4, 32), normal(2, length, 2, 32), normal(2, length, 2, 32)
  half = length // 2
  seg = jnp.asarray([[1] * half + [2] * (length - half), [1] * length], jnp.int32)  # packed
  lengths = jnp.asarray([length, length * 3 // 4], jnp.int32)
  block = 16 if length < 128 else 128
  cases = [
      ('flash: lengths + segments + GQA',
       lambda q, k, v: flash_attention(q, k, v, segment_ids=seg, lengths=lengths),
       lambda q, k, v: attention_reference(q, k, v, segment_ids=seg, lengths=lengths),
       (q, k, v)),
  ]
  if shapes is not TINY:   # tiny: one flash case; tests/kernels cover the rest on CPU
    cases.append(('flash: causal', lambda q, k, v: flash_attention(q, k, v, causal=True),
                  lambda q, k, v: attention_reference(q, k, v, causal=True), (q, k, v)))
  kr, vr = jnp.repeat(k, 2, 2), jnp.repeat(v, 2, 2)
  routed = length - length % block
  if routed >= 2 * block and shapes is not TINY:   # tiny: tests/kernels cover it on CPU
    kw = dict(block_size=block, top_k=2)
    cases.append(('routed attention',
                  lambda q, k, v: routed_attention(q, k, v, **kw),
                  lambda q, k, v: routed_attention_reference(q, k, v, **kw),
                  (q[:, :routed], kr[:, :routed], vr[:, :routed])))
  sizes = jnp.asarray([length // 2, 0, length // 4, length - length // 2 - length // 4],
                      jnp.int32)
  cases.append(('grouped matmul', lambda a, b: grouped_matmul(a, b, sizes),
                lambda a, b: grouped_matmul_reference(a, b, sizes),
                (normal(length, 64), normal(4, 64, 48) / 8)))
  rows = []
  for name, kernel, reference, inputs in cases:
    row = dict(check=name, backend=backend, max_err=None, ok=False, note='')
    try:
      got = jax.jit(lambda *xs: _grads(kernel, *xs))(*inputs)
      want = jax.jit(lambda *xs: _grads(reference, *xs))(*inputs)
      row['max_err'] = max(_max_err(a, b) for a, b in zip(got, want))
      row['ok'] = row['max_err'] <= 2e-3
    except Exception as e:  # pylint: disable=broad-except  (a kernel that fails to compile)
      row['note'] = f'{type(e).__name__}: {str(e).splitlines()[0][:160]}'
    rows.append(row)
  return rows


def kernel_pytest(out_dir) -> dict:
  """`pytest tests/kernels` on this machine's default backend: counts from its junit XML."""
  xml = os.path.join(out_dir, 'kernel_tests.xml')
  cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', 'tests/kernels',
         f'--junitxml={xml}']
  start = time.perf_counter()
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
  result = dict(returncode=proc.returncode, seconds=time.perf_counter() - start,
                tail=proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else [])
  if os.path.exists(xml):
    import xml.etree.ElementTree as ET  # pylint: disable=g-import-not-at-top
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
    result.update({k: int(suite.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped')})
  return result


# -- kernel speed ---------------------------------------------------------------------------------


def attention_rows(shapes, backend) -> list[dict]:
  from mmjax.kernels import attention_reference, flash_attention
  args = argparse.Namespace(repeats=shapes['repeats'])
  rows = []
  for length in shapes['lengths']:
    batch = max(1, shapes['tokens'] // length)
    heads, head_dim = shapes['heads'], shapes['head_dim']
    qkv = bench_kernels._qkv(batch, length, heads, head_dim, jnp.bfloat16)  # pylint: disable=protected-access
    shape = f'b{batch} L{length} h{heads} d{head_dim}'
    flops = 4.0 * batch * heads * length * length * head_dim
    bench_kernels.measure(rows, args, 'attention', 'pallas', shape, flash_attention, qkv, flops)
    bench_kernels.measure(rows, args, 'attention', 'cudnn', shape,
                          lambda q, k, v: jax.nn.dot_product_attention(
                              q, k, v, implementation='cudnn'), qkv, flops,
                          note='' if backend == 'gpu' else f'skipped: cuDNN needs a GPU '
                          f'(backend {backend})')
    bench_kernels.measure(rows, args, 'attention', 'xla', shape, attention_reference, qkv, flops)
  return rows


def gmm_rows(shapes) -> list[dict]:
  """The Pallas grouped matmul vs `jax.lax.ragged_dot` (and, full shapes, a dense matmul of
  the same FLOPs) on groups of random sizes, as `tools/bench_kernels.py` measures them."""
  from mmjax.kernels import grouped_matmul
  args = argparse.Namespace(repeats=shapes['repeats'])
  rows = []
  for m, k, n, groups in shapes['gmm']:
    rng = np.random.default_rng(0)
    sizes = jnp.asarray(rng.multinomial(m, rng.dirichlet(np.ones(groups))).astype(np.int32))
    lhs = jnp.asarray(rng.standard_normal((m, k), np.float32), jnp.bfloat16)
    rhs = jnp.asarray(rng.standard_normal((groups, k, n), np.float32) / np.sqrt(k), jnp.bfloat16)
    shape, flops = f'm{m} k{k} n{n} g{groups}', 2.0 * m * k * n
    impls = [('pallas', lambda a, b: grouped_matmul(a, b, sizes), (lhs, rhs)),
             ('ragged_dot', lambda a, b: jax.lax.ragged_dot(a, b, sizes), (lhs, rhs))]
    if shapes is not TINY:
      impls.append(('dense-matmul', lambda a, b: a @ b, (lhs, rhs[0])))
    for impl, fn, inputs in impls:   # backward: d_lhs and d_rhs, one matmul each
      bench_kernels.measure(rows, args, 'gmm', impl, shape, fn, inputs, flops, total_factor=3.0)
  return rows


# -- train step and input pipeline ------------------------------------------------------------


def _config(name, task_name, batch, tiny):
  from mmjax import config as config_lib
  overrides = ['--config.mesh.data=-1', '--config.mesh.fsdp=1', '--config.mesh.tensor=1',
               '--config.mesh.expert=1']
  if tiny:
    overrides += list(TINY_OVERRIDES)
  config = config_lib.load_config(os.path.join(ROOT, 'configs', name), overrides)
  batch = -(-batch // jax.device_count()) * jax.device_count()   # data-parallel over devices
  with config.tasks.unlocked():
    for t in list(config.tasks.keys()):
      if t != task_name:
        del config.tasks[t]
    config.tasks[task_name].batch_size = batch
  return config


def _task(config):
  from mmjax.core.tasks import task_signatures
  return task_signatures(config)[0]


def _memory_limit() -> int | None:
  """Bytes the first device may allocate (None where the backend does not say, e.g. CPU)."""
  try:
    return (jax.devices()[0].memory_stats() or {}).get('bytes_limit')
  except Exception:  # pylint: disable=broad-except  (backends without memory stats)
    return None


def _memory_fit_batch(name, task_name, shapes, tiny) -> tuple[int, str]:
  """The batch to time: from a compiled probe's memory, the largest power of two whose
  arguments + activations fit 85% of the device's memory (capped); fixed when tiny."""
  probe = shapes['probe_batch']
  limit = None if tiny else _memory_limit()
  if not limit:
    return probe, 'fixed (tiny)' if tiny else 'fixed (device memory unknown)'
  from mmjax.core import partitioning
  from mmjax.train import state as state_lib, step as step_lib
  config = _config(name, task_name, probe, tiny)
  mesh = partitioning.make_mesh(config.mesh)
  graphdef, abstract, shardings = state_lib.abstract_train_state(config, mesh)
  step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  task = _task(config)
  mem = step.lower(abstract, step_lib.abstract_batch(task, config, mesh), task).compile(
      ).memory_analysis()
  per_example = mem.temp_size_in_bytes / probe
  room = 0.85 * limit - mem.argument_size_in_bytes - mem.output_size_in_bytes
  batch = probe
  while batch * 2 <= shapes['max_batch'] and per_example * batch * 2 <= room:
    batch *= 2
  return batch, (f'memory fit: {per_example / 2**20:.1f} MiB/example of '
                 f'{limit / 2**30:.1f} GiB')


def train_step_rows(shapes, tiny) -> list[dict]:
  from mmjax.plan import hardware
  from .bench_step import time_step
  peak = hardware.mfu_peak(jax.devices()[0])
  rows = []
  for kind, name, task_name in shapes['configs']:
    row = dict(model=kind, config=name, task=task_name, batch=None, step_ms=None,
               examples_per_s=None, tflop_per_step=None, mfu=None, peak=peak.name,
               peak_source=peak.source, note='')
    try:
      batch, how = _memory_fit_batch(name, task_name, shapes, tiny)
      while True:
        config = _config(name, task_name, batch, tiny)
        try:
          step_s, flops, compile_s, _ = time_step(config, _task(config), shapes['steps'])
          break
        except Exception as e:  # pylint: disable=broad-except
          oom = 'RESOURCE_EXHAUSTED' in str(e) or 'out of memory' in str(e).lower()
          if not oom or batch <= 1:
            raise
          batch, how = batch // 2, how + '; halved after out-of-memory'
      batch = _task(config).batch_size
      total_peak = peak.flops * jax.device_count() if peak.flops else None
      row.update(batch=batch, batch_choice=how, step_ms=step_s * 1e3,
                 compile_s=compile_s, examples_per_s=batch / step_s,
                 tflop_per_step=flops / 1e12 if flops else None,
                 mfu=(flops / step_s / total_peak) if flops and total_peak else None)
    except Exception as e:  # pylint: disable=broad-except
      row['note'] = f'{type(e).__name__}: {str(e).splitlines()[0][:160]}'
    rows.append(row)
  return rows


def pipeline_rows(shapes, tiny, data_dir, steps) -> list[dict]:
  """The digits loader at the dense step's image size and batch, against that step's rate."""
  from mmjax.data import pipeline
  dense = next((r for r in steps if r['model'] == 'dense' and r.get('batch')), None)
  _, name, task_name = shapes['configs'][0]
  batch = dense['batch'] if dense else shapes['probe_batch']
  step_config = _config(name, task_name, batch, tiny)
  size = _task(step_config).resolution
  config = _config('demo.py', 'image_text', batch, tiny)
  with config.unlocked():
    config.data_dir = data_dir
  t = config.tasks.image_text
  t.image_size, t.text_length = size.image_size, size.text_length
  with config.model.unlocked():
    config.model.max_grid = max(config.model.max_grid, size.image_size // config.model.patch_size)
    config.model.max_text_length = max(config.model.max_text_length, size.text_length)
  task = _task(config)
  it = pipeline.make_train_iterator(task, config, seed=0)
  try:
    loader = pipeline.measure_throughput(it, num_batches=shapes['pipeline_batches'])
  finally:
    it.close()
  step_rate = dense['examples_per_s'] if dense else None
  return [dict(task=task.signature_name, batch=batch, loader_examples_per_s=loader[
      'examples_per_s'], step_examples_per_s=step_rate,
      headroom=(loader['examples_per_s'] / step_rate) if step_rate else None)]


# -- report ---------------------------------------------------------------------------------------


def _fmt(v, spec='.3g'):
  if v is None:
    return '-'
  if isinstance(v, float):
    return format(v, spec)
  return str(v)


def _table(rows, cols) -> list[str]:
  lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  lines += ['| ' + ' | '.join(_fmt(r.get(c)) for c in cols) + ' |' for r in rows]
  return lines + ['']


def markdown(report) -> str:
  m = report['meta']
  out = [f"# Accelerator report: {m['device']} x{m['devices']} ({m['backend']})", '',
         f"jax {m['jax']}, shapes {'tiny' if m['tiny'] else 'full'}, "
         f"{m['seconds']:.0f} s in all.", '']
  sections = [
      ('kernels', 'Kernels compiled for the device vs their references (fwd + grads)',
       ('check', 'backend', 'max_err', 'ok', 'note')),
      ('attention', 'Attention TFLOP/s (bf16)', ('impl', 'shape', 'passes', 'ms', 'tflops', 'note')),
      ('grouped_matmul', 'Grouped matmul vs ragged_dot (bf16)',
       ('impl', 'shape', 'passes', 'ms', 'tflops', 'note')),
      ('train_step', 'Train step (data-parallel over the host\'s devices)',
       ('model', 'config', 'batch', 'step_ms', 'examples_per_s', 'tflop_per_step', 'mfu',
        'peak', 'note')),
      ('input_pipeline', 'Input pipeline vs the dense step',
       ('task', 'batch', 'loader_examples_per_s', 'step_examples_per_s', 'headroom')),
  ]
  for key, title, cols in sections:
    out += [f'## {title}', '']
    if key in report['skipped']:
      out += [f"skipped: {report['skipped'][key]}", '']
      continue
    out += _table(report[key], cols)
    if key == 'kernels' and report.get('kernel_pytest'):
      p = report['kernel_pytest']
      out += [f"tests/kernels on {m['backend']}: {p.get('tests', '?')} tests, "
              f"{p.get('failures', '?')} failures, {p.get('errors', '?')} errors, "
              f"{p.get('skipped', '?')} skipped (exit {p['returncode']}).", '']
  return '\n'.join(out)


def run(args) -> dict:
  start = time.perf_counter()
  os.makedirs(args.out, exist_ok=True)
  device = jax.devices()[0]
  report = dict(meta=dict(backend=args.backend, device=device.device_kind,
                          devices=jax.local_device_count(), jax=jax.__version__,
                          tiny=args.tiny), skipped={})
  steps = []
  plan = [('kernels', lambda: kernel_checks(args.shapes, args.backend)),
          ('attention', lambda: attention_rows(args.shapes, args.backend)),
          ('grouped_matmul', lambda: gmm_rows(args.shapes)),
          ('train_step', lambda: train_step_rows(args.shapes, args.tiny)),
          ('input_pipeline', lambda: pipeline_rows(
              args.shapes, args.tiny, args.data_dir or os.path.join(args.out, 'tfds'), steps))]
  for key, fn in plan:
    if key in args.skip:
      report['skipped'][key] = 'asked (--skip)'
      continue
    t0 = time.perf_counter()
    print(f'== {key}', flush=True)
    report[key] = fn()
    if key == 'train_step':
      steps = report[key]
    print(f'   {time.perf_counter() - t0:.1f} s', flush=True)
  if args.pytest and 'kernels' not in args.skip:
    report['kernel_pytest'] = kernel_pytest(args.out)
  report['meta']['seconds'] = time.perf_counter() - start
  with open(os.path.join(args.out, 'accelerator_report.json'), 'w') as f:
    json.dump(report, f, indent=1, default=float)
  text = markdown(report)
  with open(os.path.join(args.out, 'accelerator_report.md'), 'w') as f:
    f.write(text + '\n')
  print(text)
  return report


def main(argv=None) -> int:
  from mmjax import cli
  return cli.run(lambda: run(parse_args(argv)) and 0)


if __name__ == '__main__':
  sys.exit(main())
