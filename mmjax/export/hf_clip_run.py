"""`export_hf_clip_run`: `python -m mmjax.export --workdir=DIR --format=hf_clip --output=OUT`,
where DIR is a training run (its latest or `step`'s checkpoint) or an export (e.g. one of
tools.import_weights). See `hf_clip.py` for what maps."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from flax import nnx

from mmjax.core.exports import params_io
from mmjax.export import hf_clip
from mmjax.export.errors import ExportError
from mmjax.export.load import graphdef
from mmjax.export.run import _portable, _restore, read_run


def read_params(workdir: str, step: int | None):
  """-> (config, float32 numpy params) of a training run or a params-only export."""
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')) and params_io.is_params_export(
      workdir):
    if step is not None and int(step) != params_io.export_step(workdir):
      raise ExportError(f'{workdir} is an export of step {params_io.export_step(workdir)}, not '
                        f'{step}: drop --step.')
    params, config = params_io.load_params(workdir)
  else:
    config, _, step = read_run(workdir, step)
    config = _portable(config)
    _, params = _restore(config, workdir, step)
  return config, jax.tree.map(lambda p: np.asarray(p, np.float32), params)


def export_hf_clip_run(workdir: str, output: str, step: int | None = None,
                       overwrite: bool = False, quiet: bool = False) -> dict:
  if os.path.abspath(output) == os.path.abspath(workdir):
    raise ExportError('--output must differ from --workdir: choose a new directory.')
  config, params = read_params(workdir, step)
  hf_clip.to_hf(config, params)            # refuses what does not map before anything is written
  hf_clip.check_output(output, overwrite)
  model = nnx.merge(graphdef(config), params)
  report = hf_clip.export_hf_clip(config, params, model, output, overwrite)
  if not quiet:
    print(json.dumps(report))
  return report
