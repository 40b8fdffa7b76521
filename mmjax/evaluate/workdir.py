"""Evaluate a run or an export: what `python -m mmjax.evaluate`, the demo and the zero-shot
notebook all call.

    rep = evaluate_run('runs/demo')                                  # the config's datasets
    rep = evaluate_run('runs/demo', datasets='cifar10,imagenet2012')  # standard benchmarks
    rep = evaluate_run('exports/demo', suite='image', output='eval/demo')

The run's config is read from `DIR/config.json` (a training workdir and an export both hold
one) unless given. Reports go to `output`, by default `DIR/eval` of a training workdir; an
export (or anything without `checkpoints/`) is never written into, so it needs an `output`
outside it. Benchmarks whose dataset is not prepared are listed as skipped, with the command
that prepares them, and the others are still evaluated.
"""

from __future__ import annotations

import dataclasses
import os

import jax

from mmjax import config as config_lib
from mmjax.data.digits import builder as digits_builder
from mmjax.data import pipeline
from mmjax.data.errors import DataError
from mmjax.data.options import DataOptions
from mmjax.data.tokenizer import Tokenizer
from mmjax.evaluate import entries as entries_lib
from mmjax.evaluate import registry, report, restore, suite_report
from mmjax.evaluate import one_model
from mmjax.evaluate.errors import EvalError
from mmjax.core import partitioning
from mmjax.core.exports import layout as export_layout
from mmjax.config.defaults import setting

PROBES = ('few_shot', 'linear_probe')


def load_run_config(workdir: str, config_arg: str | None = None, overrides=()):
  """`--config` when given, else the `config.json` that training or export left in `workdir`."""
  if config_arg:
    return config_lib.load_config(config_arg, overrides)
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise EvalError(f'{workdir} has no config.json: pass the --workdir of a training run or an '
                    'export, or name the run config with --config=configs/<name>.py.')
  with open(path) as f:
    config = config_lib.config_from_json(f.read())
  tok = setting(setting(config, 'text'), 'text.tokenizer')
  if tok and not os.path.isabs(tok) and os.path.isfile(os.path.join(workdir, tok)):
    with config.unlocked():   # an imported export names its tokenizer beside config.json
      config.text.tokenizer = os.path.abspath(os.path.join(workdir, tok))
  for key, value in overrides:
    config_lib.apply_override(config, key, value)
  config_lib.resolve(config)
  config_lib.validate(config)
  return config


EXPORT_FILES = ('export_report.json', 'orbax', 'model.safetensors')   # see mmjax/export/layout.py


def check_source(workdir: str, step: int | None = None) -> None:
  """EvalError unless `workdir` holds checkpoints (with `step`, when given) or an export."""
  if os.path.isdir(restore.checkpoint_dir(workdir)) or workdir.endswith('.safetensors') or any(
      os.path.exists(os.path.join(workdir, f)) for f in EXPORT_FILES):
    return
  restore.choose_step(workdir, step)   # raises: no checkpoint in DIR/checkpoints, train first


def output_dir(workdir: str, output: str | None) -> str:
  """Where the reports go; never inside an export (or any directory without checkpoints/)."""
  is_run = os.path.isdir(restore.checkpoint_dir(workdir))
  if output is None:
    if not is_run:
      raise EvalError(f'{workdir} is not a training workdir (no checkpoints/), so evaluation '
                      'does not write into it: pass --output=DIR outside it.')
    return report.eval_dir(workdir)
  out, src = os.path.abspath(output), os.path.abspath(workdir)
  if not is_run and (out == src or out.startswith(src + os.sep)):
    raise EvalError(f'--output={output} lies inside {workdir}, which is an export and stays '
                    'unchanged: choose a directory outside it.')
  return output


def export_tokenizer(workdir: str, config):
  """The export's own `tokenizer.model` (so an export evaluates self-contained, whatever the
  data dir holds); None for a training run, which uses its config's tokenizer."""
  if os.path.isdir(restore.checkpoint_dir(workdir)):
    return None
  folder = os.path.dirname(workdir) if workdir.endswith('.safetensors') else workdir
  path = os.path.join(folder, export_layout.TOKENIZER)
  if not os.path.isfile(path):
    return None
  return Tokenizer(path, DataOptions.from_config(config).lowercase)


def check_data_dir(config) -> None:
  """EvalError when the config names a local data dir that does not exist (a typo would
  otherwise read nothing and build datasets into a new folder)."""
  data_dir = DataOptions.from_config(config).data_dir
  if data_dir and '://' not in data_dir and not os.path.isdir(os.path.expanduser(data_dir)):
    raise EvalError(f'data_dir {data_dir} does not exist: pass --config.data_dir= an existing '
                    'TFDS data dir (or leave it empty for $TFDS_DATA_DIR).')


def parse_probes(probes: str | None) -> tuple[str, ...]:
  names = tuple(p.strip() for p in (probes or '').split(',') if p.strip())
  bad = [p for p in names if p not in PROBES]
  if bad:
    raise EvalError(f'unknown probe {bad[0]!r}: use {", ".join(PROBES)} (comma-separated).')
  return names


def _batch_size(config, batch_size: int | None) -> int:
  if batch_size:
    return int(batch_size)
  evals = setting(setting(config, 'evaluation'), 'evaluation.datasets')
  return int(evals[sorted(evals.keys())[0]].batch_size) if evals else 128


def split_prepared(entries, config) -> tuple[list, dict]:
  """(entries whose dataset split can be opened, {name: why not + the command that prepares it})."""
  root = digits_builder.data_root(DataOptions.from_config(config).data_dir)
  ready, skipped = [], {}
  for e in entries:
    try:
      pipeline.dataset_info(e.dataset, config, e.split)
      ready.append(e)
    except DataError as err:
      why = str(err).split(' Prepared under')[0].rstrip('.')
      skipped[e.name] = {'reason': f'{why} (data dir {root}).', 'suite': e.suite,
                         'prepare': (e.prepare or '').replace('DATA_DIR', root)}
  return ready, skipped


def evaluate_run(workdir: str, *, config=None, config_arg: str | None = None, overrides=(),
                 step: int | None = None, datasets: str | None = None, suite: str | None = None,
                 output: str | None = None, probes: str | None = None,
                 batch_size: int | None = None, tensorboard: bool = True,
                 save_features: bool = False, dedup_captions: bool | None = None,
                 few_shot_l2: float | None = None) -> dict:
  """Evaluates `workdir` (checkpoint or params-only export); returns the full report.

  `save_features` writes the scored embeddings to OUTPUT/features/ (`features.py`);
  `dedup_captions` and `few_shot_l2`, when given, replace every entry's setting."""
  check_source(workdir, step)
  config = config if config is not None else load_run_config(workdir, config_arg, overrides)
  check_data_dir(config)
  output = output_dir(workdir, output)
  chosen = parse_probes(probes)
  skipped: dict = {}
  if datasets or suite:
    entries = entries_lib.from_benchmarks(registry.select(datasets, suite), config,
                                          batch_size=_batch_size(config, batch_size),
                                          probes=chosen)
    entries, skipped = split_prepared(entries, config)
    if not entries:
      listing = '; '.join(f'{k}: {v["prepare"]}' for k, v in skipped.items())
      raise EvalError(f'none of the chosen datasets is prepared; prepare them first ({listing}).')
  else:
    entries = [dataclasses.replace(e, few_shot=e.few_shot or 'few_shot' in chosen,
                                   linear_probe=e.linear_probe or 'linear_probe' in chosen)
               for e in entries_lib.from_config(config)]
  protocol = {k: v for k, v in (('dedup_captions', dedup_captions),
                                 ('few_shot_l2', few_shot_l2)) if v is not None}
  entries = [dataclasses.replace(e, **protocol) for e in entries]
  mesh = partitioning.make_mesh(config.mesh)
  step, graphdef, params = restore.restore_params(config, workdir, mesh, step)
  rep = one_model.evaluate_params(
      config, (graphdef, params), step, None, mesh, entries=entries, output=output,
      cache_dir=os.path.join(output, 'cache', 'text'), skipped=skipped,
      checkpoint=f'{os.path.abspath(workdir)} step {step}', save_features=save_features,
      tokenizer=export_tokenizer(workdir, config))
  if tensorboard and jax.process_index() == 0:
    suite_report.log_tensorboard(rep, output)
  return rep
