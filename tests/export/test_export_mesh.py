"""A checkpoint saved on 8 devices exports on 1 device, in a fresh process."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import export_fixtures as fx
from mmjax.core.exports.params_io import load_params
from mmjax_testing import ROOT, xla_flags


def test_eight_device_checkpoint_exports_on_one_device(tmp_path):
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  workdir, out = str(tmp_path / 'run'), str(tmp_path / 'export')
  _, params = fx.make_run(workdir, mesh_sizes={'data': 8}, with_eval=False)
  env = {**os.environ, 'XLA_FLAGS': xla_flags(1),
         'JAX_PLATFORMS': 'cpu'}
  code = ('import jax, sys; assert jax.device_count() == 1; from mmjax.export.__main__ import '
          'main; sys.exit(main(sys.argv[1:]))')
  run = subprocess.run([sys.executable, '-c', code, f'--workdir={workdir}', f'--output={out}',
                        '--format=orbax,safetensors'], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  for where in ('orbax', 'model.safetensors'):
    loaded, _ = load_params(os.path.join(out, where))
    jax.tree.map(np.testing.assert_array_equal, loaded, params)
