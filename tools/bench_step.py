"""Train-step benchmark: step time, examples/s, model FLOPs per step and MFU.

  python -m tools.bench_step                                  # tiny, small, base on this machine
  python -m tools.bench_step --presets=tiny --batch=64 --task=video_text --out=bench.json
  python -m tools.bench_step --config=configs/vatt.py --config.k=v --out=bench.json  # one config

Each preset runs the demo config's task at that size on all local devices (data parallel),
compile time excluded. FLOPs are model FLOPs (`mmjax.plan.flop_count.count_model_flops`: the
step's jaxpr with every kernel as its pure-JAX reference, so attention counts as its mathematics
whichever kernel runs). MFU is against the device's datasheet bf16 peak (mmjax/plan/hardware.py);
on CPU against a measured float32 matmul rate, and 'unknown' for a device not in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def time_step(config, task, steps: int):
  """Median seconds of the compiled train step on synthetic inputs, compile excluded.

  Returns (step_seconds, model FLOPs per step, compile_seconds, abstract_state).
  """
  from mmjax.train import state as state_lib, step as step_lib
  from mmjax.core import partitioning
  from mmjax.plan import flop_count
  mesh = partitioning.make_mesh(config.mesh)
  graphdef, abstract, shardings = state_lib.abstract_train_state(config, mesh)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  train_step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  abstract_batch = step_lib.abstract_batch(task, config, mesh)
  flops = flop_count.count_model_flops(lambda: train_step.trace(abstract, abstract_batch, task))
  t0 = time.perf_counter()
  compiled = train_step.lower(abstract, abstract_batch, task).compile()
  compile_s = time.perf_counter() - t0
  local = synthetic_batch(step_lib.batch_spec(task), np.random.default_rng(0))
  batch = jax.device_put(local, partitioning.batch_sharding(mesh))
  state, m = compiled(state, batch)  # warm-up
  jax.block_until_ready(m)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, m = compiled(state, batch)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  return statistics.median(times), flops.flops, compile_s, abstract


def synthetic_batch(spec: dict, rng) -> dict:
  """Random inputs of `step.batch_spec`'s shapes (nested per member for a mixed step)."""
  out = {}
  for k, v in spec.items():
    if isinstance(v, dict):
      out[k] = synthetic_batch(v, rng)
      continue
    shape, dt = v
    out[k] = (rng.integers(0, 10, shape) if k in ('text', 'label') else
              np.ones(shape) if k == 'text_mask' else rng.integers(0, 256, shape)
              if np.dtype(dt) == np.uint8 else rng.normal(size=shape) * (
                  8000 if np.dtype(dt) == np.int16 else 1)).astype(dt)
  return out


def bench_config(config_arg: str, overrides, steps: int) -> dict:
  """Step time of a training config as the loop dispatches it: each step task the AGD sampler
  draws (one mixed step in `agd.mode=mixed`), timed alone; `step_s` weighs them by their share
  of steps. What a sweep's timing pass runs once per variant (`mmjax.sweep --bench`)."""
  from mmjax import config as config_lib
  from mmjax.core.tasks import tasks_from_config
  from mmjax.train.agd_sampler import AgdSampler
  config = config_lib.load_config(config_arg, overrides)
  sampler = AgdSampler(tasks_from_config(config), mode=config.agd.mode, seed=0)
  shares = sampler.draw_shares()
  tasks, total, weight = {}, 0.0, 0.0
  for task in sampler.step_tasks():
    step_s, flops, compile_s, _ = time_step(config, task, steps)
    share = shares.get(task.signature_name, 1.0 / len(sampler.step_tasks()))
    tasks[task.signature_name] = {'step_s': step_s, 'compile_s': compile_s, 'share': share,
                                  'flops_per_step': flops}
    total += share * step_s
    weight += share
  return {'config': config_arg, 'overrides': [list(o) for o in overrides], 'steps': steps,
          'step_s': total / weight, 'tasks': tasks, 'devices': jax.device_count(),
          'device_kind': jax.devices()[0].device_kind}


def bench_preset(preset: str, task_name: str, batch: int, steps: int, dtype: str) -> dict:
  from mmjax import config as config_lib
  from mmjax.core.tasks import task_signatures
  overrides = [f'--config.model.size={preset}', f'--config.model.dtype={dtype}']
  if preset != 'tiny':  # the demo config pins tiny-friendly sizes; let the preset decide
    overrides += [f'--config.model.{k}=None' for k in ('num_layers', 'width', 'num_heads',
                                                       'mlp_dim')]
  config = config_lib.load_config(os.path.join(ROOT, 'configs/demo.py'), overrides)
  with config.tasks.unlocked():
    for t in config.tasks.values():
      t.batch_size = batch
  names = [t.name for t in task_signatures(config)]
  if task_name not in names:
    raise config_lib.ConfigError(f'--task {task_name!r} is not a task of configs/demo.py; '
                                 f'choose one of {", ".join(names)}.')
  task = next(t for t in task_signatures(config) if t.name == task_name)
  step_s, flops, compile_s, abstract = time_step(config, task, steps)
  params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract['params']))
  return dict(preset=preset, task=task.name, batch=batch, dtype=dtype, params=params,
              devices=jax.device_count(), compile_s=compile_s, step_s=step_s,
              examples_per_s=batch / step_s, flops_per_step=flops,
              achieved_flops_per_s=(flops / step_s) if flops else None)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--presets', default='tiny,small,base')
  parser.add_argument('--task', default='image_text', help='a task name of configs/demo.py')
  parser.add_argument('--batch', type=int, default=0, help='0 = 64 for tiny, 16 otherwise')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--out', default='')
  parser.add_argument('--config', default='',
                      help='FILE.py[:arg]: time this training config (with --config.k=v) instead '
                      'of the demo presets; --out gets one JSON object')
  from mmjax import cli

  def run():
    args, overrides = cli.parse(parser, argv)
    if args.config:
      result = bench_config(args.config, overrides, args.steps)
      print(f'{args.config}: {1e3 * result["step_s"]:.2f} ms/step (' + ', '.join(
          f'{k} {1e3 * v["step_s"]:.2f} ms' for k, v in result['tasks'].items()) + ')')
      if args.out:
        with open(args.out, 'w') as f:
          json.dump(result, f, indent=2)
      return 0
    if overrides:
      from mmjax.config import ConfigError
      raise ConfigError('--config.k=v overrides need --config=FILE.py: name the config they change.')
    return _bench(args)
  return cli.run(run)


def _bench(args) -> int:
  from mmjax.plan import hardware
  peak = hardware.mfu_peak(jax.devices()[0])
  peak_total = peak.flops * jax.device_count() if peak.flops else None
  rows = []
  for preset in args.presets.split(','):
    batch = args.batch or (64 if preset == 'tiny' else 16)
    r = bench_preset(preset, args.task, batch, args.steps, args.dtype)
    r['mfu'] = (r['achieved_flops_per_s'] / peak_total
                if peak_total and r['achieved_flops_per_s'] else None)
    r['peak'] = {'name': peak.name, 'flops_per_device': peak.flops, 'source': peak.source}
    rows.append(r)
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()}  peak: {peak.name} '
        f'({peak.source}: {peak.flops / 1e12 if peak.flops else float("nan"):.2f} TFLOP/s/device)')
  print(f'{"preset":8}{"params":>12}{"batch":>7}{"step ms":>10}{"ex/s":>10}'
        f'{"GFLOP/step":>12}{"TFLOP/s":>10}{"MFU":>8}')
  for r in rows:
    mfu = f'{100 * r["mfu"]:.1f}%' if r['mfu'] is not None else 'unknown'
    gf = r['flops_per_step'] / 1e9 if r['flops_per_step'] else float('nan')
    tf = r['achieved_flops_per_s'] / 1e12 if r['achieved_flops_per_s'] else float('nan')
    print(f'{r["preset"]:8}{r["params"]:>12,}{r["batch"]:>7}{1e3 * r["step_s"]:>10.1f}'
          f'{r["examples_per_s"]:>10.1f}{gf:>12.2f}{tf:>10.3f}{mfu:>8}')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(rows, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
