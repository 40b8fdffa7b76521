"""Exports of a trained model: params-only orbax, safetensors, serialized StableHLO, parity.

  python -m mmjax.export --workdir=runs/demo --output=runs/demo/export
  report = export_run('runs/demo', 'runs/demo/export', formats='all', dtype='float32')
  params, config = mmjax.core.exports.params_io.load_params('runs/demo/export', abstract_params)

Layout of an export: `mmjax/core/exports/layout.py`; flat parameter names:
`mmjax/core/exports/param_names.py`; the StableHLO functions'
inputs and preprocessing: `signature.py`; tolerances: `parity.py`.
"""

from mmjax.export.run import export_run

__all__ = ['export_run']
