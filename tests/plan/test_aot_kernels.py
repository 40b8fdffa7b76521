"""The dry run compiles the model's Pallas TPU kernels (Mosaic), not their XLA fallbacks."""

import os

import pytest

from mmjax_testing import ROOT


def test_train_step_lowers_pallas_tpu_kernels_for_a_v5p_topology():
  from mmjax.plan import topology  # pylint: disable=g-import-not-at-top
  try:
    devices = topology.get_topology('v5p-8')
  except Exception as e:  # libtpu missing or unusable here
    pytest.skip(f'no TPU topology available ({type(e).__name__}: {e})')
  from mmjax import config as config_lib
  from mmjax.core.tasks import task_signatures
  from mmjax.kernels import backend as kernel_backend
  from mmjax.train import state as state_lib, step as step_lib
  config = config_lib.load_config(os.path.join(ROOT, 'configs/demo.py'),
                                  ['--config.model.num_layers=1'])
  mesh = topology.make_aot_mesh({'data': -1}, devices)
  graphdef, abstract, shardings = state_lib.abstract_train_state(config, mesh)
  train_step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  task = next(t for t in task_signatures(config) if t.name == 'image_text')
  with kernel_backend.target('tpu'):
    lowered = train_step.trace(abstract, step_lib.abstract_batch(task, config, mesh), task).lower()
  assert 'tpu_custom_call' in lowered.as_text()      # the Mosaic kernels are in the program
  assert lowered.compile().memory_analysis() is not None
