"""What a checkpoint or export holds: parameter names, shapes, dtypes, step and config summary.

  python -m tools.inspect_checkpoint runs/demo                   # training workdir (latest step)
  python -m tools.inspect_checkpoint runs/demo/checkpoints/400   # one training step
  python -m tools.inspect_checkpoint runs/demo/export            # an export (every format in it)
  python -m tools.inspect_checkpoint runs/demo/export/model.safetensors

Reads metadata only (orbax tree metadata, the safetensors header, signature.json); no array
is loaded. Names are the flat names of `mmjax/core/exports/param_names.py`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from mmjax.core.exports import layout
from mmjax.core.exports import param_names as naming
from mmjax.core.exports import params_only
from mmjax.core.exports import safetensors_format


def _config_lines(config: dict | None) -> list[str]:
  if not config:
    return ['config: (none found)']
  m = config.get('model', {})
  moe = m.get('moe', {}) or {}
  lines = [f'model: size={m.get("size")} layers={m.get("num_layers")} width={m.get("width")} '
           f'heads={m.get("num_heads")} mlp={m.get("mlp_dim")} embed_dim={m.get("embed_dim")} '
           f'dtype={m.get("dtype")} pooling={m.get("pooling")} '
           f'sharing={m.get("encoder_sharing")} experts={moe.get("num_experts", 0)}']
  for name, t in sorted((config.get('tasks') or {}).items()):
    lines.append(f'task {name}: {t.get("dataset")} [{t.get("modalities")}] '
                 f'batch={t.get("batch_size")}')
  datasets = (config.get('evaluation') or {}).get('datasets') or {}
  for name, e in sorted(datasets.items()):
    lines.append(f'eval {name}: {e.get("dataset")}/{e.get("split")} [{e.get("modalities")}]')
  return lines


def _param_lines(rows: list[dict]) -> list[str]:
  width = max([len(r['name']) for r in rows] + [4])
  lines = [f'  {r["name"]:<{width}}  {str(tuple(r["shape"])):<18} {r["dtype"]}' for r in rows]
  count = sum(math.prod(r['shape']) for r in rows)
  return lines + [f'  {len(rows)} arrays, {count:,} parameters']


def _rows(tree) -> list[dict]:
  return naming.describe(naming.flatten(dict(tree)))


def _read_config(path: str) -> dict | None:
  if os.path.isfile(path):
    with open(path) as f:
      return json.load(f)
  return None


def _training(workdir: str, step: int | None) -> list[str]:
  from mmjax.core import checkpointing
  ckpt = checkpointing.Checkpointer(workdir, read_only=True, async_save=False)
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise FileNotFoundError(f'{workdir}/checkpoints holds no checkpoint.')
    step = steps[-1] if step is None else step
    if step not in steps:
      raise FileNotFoundError(f'{workdir}/checkpoints has no step {step}; it has {steps}.')
    tree = ckpt.saved_structure(step)
  finally:
    ckpt.close()
  opt = naming.flatten({'opt_state': _plain(tree.get('opt_state', {}))})
  lines = [f'training checkpoint {workdir}/checkpoints/{step} (steps: {steps})']
  lines += _config_lines(_read_config(os.path.join(workdir, layout.CONFIG)))
  lines += ['params:'] + _param_lines(_rows(tree['params']))
  lines.append(f'optimizer state: {len(opt)} arrays, '
               f'{sum(math.prod(getattr(v, "shape", ())) for v in opt.values()):,} values')
  return lines


def _plain(tree):
  """Orbax metadata trees may hold lists/tuples (optax states): make them nested dicts."""
  if isinstance(tree, dict):
    return {str(k): _plain(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return {str(i): _plain(v) for i, v in enumerate(tree)}
  return tree


def _orbax(d: str, full: bool = True) -> list[str]:
  meta = params_only.metadata(d)
  lines = [f'params-only orbax {d}: step {meta["step"]}, {meta["dtype"]}']
  if not full:
    return lines
  lines += _config_lines(_read_config(os.path.join(d, layout.CONFIG)))
  return lines + ['params:'] + _param_lines(_rows(params_only.structure(d)))


def _safetensors(f: str, full: bool = True) -> list[str]:
  meta = safetensors_format.metadata(f)
  rows = safetensors_format.describe(f)
  lines = [f'safetensors {f}: step {meta["step"]}, {meta["dtype"]}, {len(rows)} tensors']
  if not full:
    return lines
  lines += [f'naming: {meta["naming"]}'] + _config_lines(meta['config'])
  return lines + ['params:'] + _param_lines(rows)


def _stablehlo(d: str, full: bool = True) -> list[str]:
  sig = layout.read_json(os.path.join(d, layout.SIGNATURE))
  lines = [f'stablehlo {d}: step {sig["step"]}, params {sig["params"]}, '
           f'platforms {", ".join(sig["platforms"])}, jax {sig["jax_version"]}']
  for m, fn in sig['functions'].items():
    ins = ', '.join(f'{i["name"]} {i["shape"]} {i["dtype"]}' for i in fn['inputs'])
    outs = ', '.join(f'{o["name"]} {o["shape"]} {o["dtype"]}' for o in fn['outputs'])
    lines.append(f'  {fn["file"]}: ({ins}) -> {outs}')
  return lines


def describe(path: str) -> list[str]:
  """The lines printed for `path`; FileNotFoundError when it holds nothing recognisable."""
  path = os.path.normpath(path)
  if layout.safetensors_file(path) == path:
    return _safetensors(path)
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    return _training(path, None)
  parent = os.path.dirname(path)
  if os.path.basename(parent) == 'checkpoints' and os.path.basename(path).isdigit():
    return _training(os.path.dirname(parent), int(os.path.basename(path)))
  lines = []
  if layout.is_export(path):
    rep = layout.read_json(os.path.join(path, layout.REPORT))
    ok = 'passed' if rep['parity']['pass'] else 'FAILED'
    lines.append(f'export {path}: step {rep["step"]}, {rep["dtype"]}, formats '
                 f'{", ".join(rep["formats"])}; parity {ok} on {rep["parity"]["batch"]["source"]}')
  listed = False  # an export's formats hold the same params: list them once
  for find, show in ((layout.orbax_dir, _orbax), (layout.safetensors_file, _safetensors),
                     (layout.stablehlo_dir, _stablehlo)):
    found = find(path)
    if found:
      lines += show(found, full=not listed)
      listed = listed or show is not _stablehlo
  if not lines:
    raise FileNotFoundError(f'{path} is not a training workdir, checkpoint step, export, '
                            'safetensors file or StableHLO export.')
  return lines


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m tools.inspect_checkpoint',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('path', help='workdir, workdir/checkpoints/N, export dir or .safetensors')
  args = parser.parse_args(argv)
  try:
    lines = describe(args.path)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print('\n'.join(lines))
  return 0


if __name__ == '__main__':
  sys.exit(main())
