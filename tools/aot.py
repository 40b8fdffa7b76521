"""Ahead-of-time dry run: compile, never run, a config's train steps for a TPU slice.

  python -m tools.aot --config=configs/demo.py --topology=v5p-256 [--num_slices=2] \
      [--out=aot.json] [--tasks=coco_image_text,imagenet_image] [--config.mesh.fsdp=-1 ...]

Builds the config's mesh over the slice's compile-only devices (needs libtpu, not a TPU), then
lowers and compiles the train step of every task signature, and the evaluation embedding
programs (`mmjax.evaluate.embedder.Embedder`: each eval dataset's modalities and the text
prompts), on abstract sharded inputs. Reports
per-device memory against the chip's HBM, FLOPs, HBM bytes and collective bytes sent per step,
and the roofline step time and upper bounds of MFU and HFU ("MFU <=": every FLOP at peak) as a
range from perfect overlap of compute, memory and network time to none; as a table and as JSON. MFU counts model FLOPs (the jaxpr traced with
every kernel as its pure-JAX reference: attention as its mathematics), HFU hardware FLOPs (the
kernels as compiled, padding and recomputation included); collectives are timed over the ICI
links of their mesh axis, and over DCN where they cross slices (`mmjax/plan/network.py`). Each
compile's seconds are printed as it goes: an IMP-MoE-L step takes minutes on a 2-core CPU.
Exit status: 0 all fit, 1 something does not fit, 2 bad input (one sentence says what is accepted).
"""

import argparse
import json
import os
import sys
import time

import jax

from mmjax import config as config_lib
from mmjax.core import partitioning
from mmjax.core import tasks as tasks_lib
from mmjax.evaluate import embedder as embedder_lib
from mmjax.kernels import backend as kernel_backend
from mmjax.plan import compile_report
from mmjax.plan import flop_count
from mmjax.plan import hardware
from mmjax.plan import network
from mmjax.plan import topology
from mmjax.train import state as state_lib
from mmjax.train import step as step_lib


def parse_args(argv):
  """-> (flags, config overrides as (key, value) pairs)."""
  parser = argparse.ArgumentParser(prog='python -m tools.aot', description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='configs/<name>.py[:arg]')
  parser.add_argument('--topology', required=True,
                      help=f'TPU slice, e.g. v5p-256 or v6e-16 ({topology.ACCEPTED})')
  parser.add_argument('--num_slices', type=int, default=1, help='slices joined over DCN')
  parser.add_argument('--out', default=None, help='write the JSON report here')
  parser.add_argument('--skip_eval', action='store_true', help='compile the train steps only')
  parser.add_argument('--tasks', default='',
                      help='comma-separated task names: compile only their train steps '
                           '(default: every task; a big config compiles for minutes per task)')
  rest, overrides = config_lib.split_override_flags(argv)
  return parser.parse_args(rest), overrides


def compile_function(name, jitted, args, chip, fabric) -> dict:
  """Traces, lowers and compiles `jitted(*args)`; one report record (status 'ok' or 'oom')."""
  start = time.perf_counter()
  num_devices = len(fabric.devices)
  with kernel_backend.target('tpu'):  # `auto` kernels become the Pallas TPU (Mosaic) ones
    model = flop_count.count_model_flops(lambda: jitted.trace(*args))
    traced = jitted.trace(*args)
  count = flop_count.count_jaxpr(traced.jaxpr)
  try:
    lowered = traced.lower()
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
  except Exception as e:  # pylint: disable=broad-except
    if compile_report.is_oom(e):
      return compile_report.oom_record(name, chip, e, compile_report.per_device_bytes(args))
    raise
  record = compile_report.analyze(compiled, name, chip, model_flops=model.flops / num_devices,
                                  num_devices=num_devices,
                                  hardware_flops=count.flops / num_devices, fabric=fabric)
  record['traced'] = {'model_flops_global': model.flops, 'hardware_flops_global': count.flops,
                      'includes_remat': count.has_remat,
                      'while_counted_once': count.has_while or model.has_while}
  done = time.perf_counter()
  record['seconds'] = {'trace_and_lower': round(lowered_at - start, 1),
                       'compile': round(done - lowered_at, 1)}
  print(f'  {name}: traced and lowered in {lowered_at - start:.0f} s, compiled in '
        f'{done - lowered_at:.0f} s', file=sys.stderr, flush=True)
  return record


def _check_rows(what: str, rows: int, mesh) -> None:
  dp = partitioning.data_parallel_size(mesh)
  if rows % dp:
    raise ValueError(f'{what} has {rows} rows per batch, which the data-parallel size {dp} '
                     '(data*fsdp*expert) does not divide: change its batch_size or config.mesh.')


def selected_signatures(config, names: str) -> list:
  """The task signatures to compile: all, or those of the comma-separated task `names`
  (ValueError, one sentence, for a name the config does not have)."""
  signatures = tasks_lib.task_signatures(config)
  wanted = [n for n in names.split(',') if n]
  unknown = sorted(set(wanted) - {t.name for t in signatures})
  if unknown:
    raise ValueError(f'--tasks names {unknown}, which the config does not have; its tasks are '
                     f'{sorted({t.name for t in signatures})}.')
  return [t for t in signatures if not wanted or t.name in wanted]


def train_step_records(config, mesh, fabric, graphdef, abstract_state, shardings,
                       signatures) -> list[dict]:
  """One record per task signature: the train step compiled for that (task, resolution)."""
  step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  records = []
  for task in signatures:
    _check_rows(f'task {task.name!r}', task.batch_size, mesh)
    batch = step_lib.abstract_batch(task, config, mesh)
    print(f'compiling train step {task.signature_name} ...', file=sys.stderr, flush=True)
    records.append(compile_function(f'train {task.signature_name}', step,
                                    (abstract_state, batch, task), fabric.chip, fabric))
  return records


def eval_records(config, mesh, fabric, graphdef, params) -> list[dict]:
  """One record per distinct evaluation embedding program: each eval dataset's modalities
  (clips folded into rows) and the text prompts of zero-shot classification."""
  embedder = embedder_lib.Embedder(config, graphdef, params, mesh)
  dp = partitioning.data_parallel_size(mesh)
  programs = {}  # (modality, input shapes) -> (name, abstract inputs)
  for name in sorted(config.evaluation.datasets.keys()):
    ds = config.evaluation.datasets[name]
    sig = tasks_lib.task_from_config(name, ds).signatures()[0]
    clips = int(ds.get('num_clips', 1))
    for m in sig.modalities:
      if m not in embedder.modalities:
        continue
      rows = ds.batch_size * (clips if m in embedder_lib.CLIPPED and clips > 1 else 1)
      _check_rows(f'evaluation dataset {name!r} ({m})', rows, mesh)
      keys = (m, 'text_mask') if m == 'text' else (m,)
      programs.setdefault((m, rows, sig.resolution), (f'eval {name}/{m}', keys, sig, rows))
    if 'text' in embedder.modalities:  # zero-shot prompts, in chunks as Embedder.embed_text
      length = ds.get('text_length', None) or config.model.max_text_length
      rows = max(dp, -(-256 // dp) * dp)
      prompts = tasks_lib.Resolution(text_length=length)
      text = tasks_lib.Task('prompts', '', '', ('text',), rows, (prompts,))
      programs.setdefault(('text', rows, prompts), (f'eval text prompts (length {length})',
                                                    ('text', 'text_mask'), text, rows))
  records = []
  for (m, _, _), (name, keys, sig, rows) in programs.items():
    spec = step_lib.batch_spec(sig, batch_size=rows)
    inputs = {k: jax.ShapeDtypeStruct(*spec[k], sharding=embedder.batch_sharding) for k in keys}
    print(f'compiling {name} ...', file=sys.stderr, flush=True)
    program = embedder._fn(m)  # pylint: disable=protected-access  # what Embedder.run calls
    records.append(compile_function(name, program, (params, inputs), fabric.chip, fabric))
  return records


def notes(records) -> list[str]:
  """Caveats that change how a record's numbers read."""
  out = []
  for r in records:
    traced = r.get('traced') or {}
    if traced.get('includes_remat'):
      out.append(f"{r['name']}: model FLOPs include rematerialised forward passes (as HFU does).")
    if traced.get('while_counted_once'):
      out.append(f"{r['name']}: a while loop's body is counted once; FLOPs are a lower bound.")
  return out


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if not os.environ.get('JAX_PLATFORMS'):
    jax.config.update('jax_platforms', 'cpu')  # nothing runs; keep JAX off any local accelerator
  try:
    args, overrides = parse_args(argv)
    devices = topology.get_topology(args.topology, args.num_slices)  # before the config loads
    config = config_lib.load_config(args.config, overrides)
    mesh = topology.make_aot_mesh(config.mesh, devices, args.num_slices)
    signatures = selected_signatures(config, args.tasks)
  except ValueError as e:  # ConfigError, TopologyError, MeshError: one sentence each
    print(f'error: {e}', file=sys.stderr)
    return 2
  chip = hardware.chip_for_device(devices[0])
  fabric = network.Fabric(tuple(mesh.devices.flat), chip,
                          topology.parse_tpu_name(args.topology).wrap)
  try:
    graphdef, abstract_state, shardings = state_lib.abstract_train_state(config, mesh)
    records = train_step_records(config, mesh, fabric, graphdef, abstract_state, shardings,
                                 signatures)
    if not args.skip_eval:
      records += eval_records(config, mesh, fabric, graphdef, abstract_state['params'])
  except ValueError as e:  # a batch that does not divide the mesh
    print(f'error: {e}', file=sys.stderr)
    return 2
  report = {'config': args.config, 'tasks': sorted({t.name for t in signatures}),
            'overrides': [f'{k}={v}' for k, v in overrides],
            'topology': args.topology, 'num_slices': args.num_slices, 'devices': len(devices),
            'chip': hardware.device_name(devices[0]), 'mesh': dict(mesh.shape),
            'functions': records}
  report['fits'] = all((r.get('memory') or {}).get('fits') is not False for r in records)
  print(f"{report['chip']} x {len(devices)} ({args.topology} x {args.num_slices} slice(s)), "
        f"mesh {report['mesh']}")
  print(compile_report.format_table(records))
  for line in compile_report.verdicts(records) + notes(records):
    print(line)
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(report, f, indent=2)
    print(f'report written to {args.out}')
  return 0 if report['fits'] else 1


if __name__ == '__main__':
  sys.exit(main())
