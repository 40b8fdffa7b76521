"""`export_run`: one training checkpoint -> the chosen formats + a parity report, atomically.

Order: every input is checked before anything is written (workdir, config, step, formats,
dtype, output); the checkpoint is restored on one device (any saved mesh works); the artifacts
are written to a temp directory beside the output, read back from disk and compared with the
checkpoint (`parity.py`); only then is the temp directory renamed to the output. A failed
parity check keeps the export at `<output>.rejected` and raises `ParityError`. The export runs
in a single process on one device: it needs the whole parameters in host memory.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil

import jax
import numpy as np
from flax import nnx

from mmjax import config as config_lib
from mmjax.core.exports import layout
from mmjax.core import partitioning
from mmjax.core.exports import params_only
from mmjax.core.exports import safetensors_format
from mmjax.core.exports.params_io import load_params
from mmjax.data import pipeline
from mmjax.data import run_tokenizer
from mmjax.evaluate import restore
from mmjax.export import inputs as inputs_lib
from mmjax.export import model_card, parity, signature, stablehlo, staging, summary
from mmjax.export.errors import ExportError, ParityError
from mmjax.export.load import load_stablehlo

PARITY_ROWS = 32


def parse_formats(formats) -> tuple[str, ...]:
  """'orbax,safetensors' | 'all' | a sequence -> the formats in canonical order."""
  names = formats.split(',') if isinstance(formats, str) else list(formats)
  names = [n.strip() for n in names if n.strip()]
  if names == ['all'] or not names:
    return layout.FORMATS
  unknown = [n for n in names if n not in layout.FORMATS]
  if unknown:
    raise ExportError(f'unknown export format {unknown[0]!r}: choose from '
                      f'{", ".join(layout.FORMATS)} or all.')
  return tuple(f for f in layout.FORMATS if f in names)


def read_run(workdir: str, step: int | None):
  """-> (config, config JSON text, step) of a training workdir, or ExportError."""
  path = os.path.join(workdir, layout.CONFIG)
  if not os.path.isfile(path):
    raise ExportError(f'{workdir} has no config.json: pass the --workdir of a training run '
                      '(python -m mmjax.train writes it).')
  with open(path) as f:
    text = f.read()
  try:
    config = config_lib.config_from_json(text)
    config_lib.validate(config)
  except ValueError as e:  # bad JSON or ConfigError
    raise ExportError(f'{path} is not a valid run config ({str(e)[:200]}): pass the --workdir '
                      'of a training run.') from None
  steps = restore.available_steps(workdir)
  if not steps:
    raise ExportError(f'no checkpoint in {restore.checkpoint_dir(workdir)}: train first, or pass '
                      'the --workdir of a trained run.')
  if step is not None and int(step) not in steps:
    raise ExportError(f'checkpoint step {step} does not exist in '
                      f'{restore.checkpoint_dir(workdir)}; available: {", ".join(map(str, steps))}.')
  return config, text, int(steps[-1] if step is None else step)


def _portable(config):
  """The config with pure-XLA kernels, so exported code lowers for every platform."""
  config = copy.deepcopy(config)
  with config.unlocked():
    config.model.attention_impl = 'xla'
    if 'moe' in config.model:
      config.model.moe.impl = 'xla'
  return config


def _restore(config, workdir: str, step: int):
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  step, graphdef, params = restore.restore_params(config, workdir, mesh, step)
  return graphdef, jax.tree.map(np.asarray, jax.device_get(params))


def cast(params: dict, dtype: str) -> dict:
  """Floating leaves to `dtype` ('float32' | 'bfloat16'), as numpy arrays."""
  target = jax.numpy.dtype(dtype)
  return jax.tree.map(lambda p: p.astype(target) if np.issubdtype(p.dtype, np.floating) else p,
                      params)


def params_embedder(graphdef):
  """`for_params(params) -> fn(modality, inputs) -> [n, embed_dim]` numpy; one jitted program
  per modality, shared by every params dict of the same structure and dtypes."""
  fns = {}

  def for_params(params):
    def run(modality, inputs):
      if modality not in fns:
        fns[modality] = jax.jit(lambda p, x: nnx.merge(graphdef, p).embed(x, modality))
      return np.asarray(fns[modality](params, inputs))
    return run
  return for_params


def stablehlo_embedder(path: str):
  fns = load_stablehlo(path)
  return lambda modality, inputs: np.asarray(fns[modality](*inputs.values()))


def _tokenizer(config, dataset: str | None):
  """(tokenizer, description) of the run's tokenizer; (None, {'missing': why}) without one."""
  try:
    tok = pipeline.load_tokenizer(config, dataset)
  except Exception as e:  # noqa: BLE001 - no tokenizer: the text function still exports
    return None, {'missing': f'{type(e).__name__}: {str(e)[:200]}'}
  return tok, {'vocab_size': tok.vocab_size, 'lowercase': tok.lowercase}


def export_run(workdir: str, output: str, formats='all', dtype: str = 'float32',
               step: int | None = None, overwrite: bool = False, *,
               parity_rows: int = PARITY_ROWS, quiet: bool = False) -> dict:
  """Exports `workdir`'s checkpoint (latest or `step`) to `output`; returns the report dict
  (also `output/export_report.json`). Raises ExportError on bad input (nothing is written)
  and ParityError when an artifact does not match the checkpoint."""
  formats = parse_formats(formats)
  if dtype not in layout.DTYPES:
    raise ExportError(f'unknown --dtype {dtype!r}: choose float32 or bfloat16.')
  if os.path.abspath(output) == os.path.abspath(workdir):
    raise ExportError('--output must differ from --workdir: choose a new directory.')
  if jax.process_count() > 1:
    raise ExportError(f'the export runs in one process, not {jax.process_count()}: start it '
                      'on one host without jax.distributed.')
  config, config_json, step = read_run(workdir, step)
  run_tokenizer.check_run(config, workdir, 'export')  # trained with another: refused
  staging.check_output(output, overwrite)
  if 'stablehlo' in formats and importlib.util.find_spec('flatbuffers') is None:
    raise ExportError('the stablehlo format needs the flatbuffers package: pip install '
                      'flatbuffers (it is in requirements.txt).')
  config = _portable(config)
  graphdef, params = _restore(config, workdir, step)
  stored = cast(params, dtype)
  modalities = tuple(nnx.merge(graphdef, params).spec.modalities)
  sizes = inputs_lib.input_sizes(config, modalities)
  name, entry = inputs_lib.eval_entry(config)
  tok, tok_desc = _tokenizer(config, entry.dataset if entry is not None else None)

  with staging.staged(output) as tmp:
    with open(os.path.join(tmp, layout.CONFIG), 'w') as f:
      f.write(config_json)
    if tok is not None:
      shutil.copyfile(tok.model_file, os.path.join(tmp, layout.TOKENIZER))
    artifacts, files, embedder = {}, {}, params_embedder(graphdef)
    if 'orbax' in formats:
      params_only.save(os.path.join(tmp, layout.ORBAX_DIR), stored, config_json, step, dtype)
      loaded = load_params(tmp, params)[0]
      artifacts['orbax'], files['orbax'] = embedder(loaded), layout.ORBAX_DIR
    if 'safetensors' in formats:
      path = os.path.join(tmp, layout.SAFETENSORS)
      safetensors_format.save(path, stored, config_json, step, dtype)
      loaded = load_params(path, params)[0]
      artifacts['safetensors'] = embedder(loaded)
      files['safetensors'] = layout.SAFETENSORS
    if 'stablehlo' in formats:
      sig = signature.build(config, modalities, sizes, step, dtype, stablehlo.PLATFORMS,
                            tok_desc if tok is not None else None)
      stablehlo.save(os.path.join(tmp, layout.STABLEHLO_DIR), graphdef, stored, modalities,
                     sizes, sig)
      artifacts['stablehlo'] = stablehlo_embedder(tmp)
      files['stablehlo'] = layout.STABLEHLO_DIR

    batch, batch_desc, info = inputs_lib.parity_batch(config, modalities, sizes, parity_rows)
    prompts = None
    if info is not None and info.class_names and tok is not None and 'text' in modalities:
      prompts = parity.zero_shot_prompts(entry, info.class_names, tok, modalities,
                                         sizes['text_length'])
    check = parity.check(embedder(params), artifacts, batch, modalities, dtype,
                         prompts)
    report = {'step': step, 'dtype': dtype, 'formats': list(formats), 'modalities':
              list(modalities), 'workdir': os.path.abspath(workdir),
              'output': os.path.abspath(output), 'files': files, 'input_sizes': sizes,
              'tokenizer': layout.TOKENIZER if tok is not None else None,
              'parity': {'batch': batch_desc, 'evaluation_entry': name, **check}}
    if tok is None:
      report['tokenizer_missing'] = tok_desc['missing']
    layout.write_json(os.path.join(tmp, layout.REPORT), report)
    model_card.write(os.path.join(tmp, layout.MODEL_CARD), json.loads(config_json), workdir,
                     step, report)
    if not check['pass']:
      rejected = staging.reject(tmp, output)
      bad = [f for f, r in check['formats'].items() if not r['pass']]
      raise ParityError(f'exported {", ".join(bad)} embeddings differ from the checkpoint beyond '
                        f'the {dtype} tolerance; the export was kept at {rejected} '
                        f'(see its {layout.REPORT}) and {output} was not changed.')
    staging.commit(tmp, output)
  if not quiet:
    print(summary.format_report(report))
  return report
