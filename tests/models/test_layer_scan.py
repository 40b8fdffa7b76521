"""`model.scan_layers`: the scanned encoder trains exactly like the unrolled one and keeps its
parameter layout (so checkpoints and exports do not change)."""

import jax
import numpy as np
import pytest

from mmjax.models.layer_scan import group_runs
from mmjax_testing import demo_config, train_steps

MOE = ('--config.model.moe.num_experts=4', '--config.model.moe.last_n=2')


def test_group_runs():
  assert group_runs(['d', 'd', 'm', 'm', 'd']) == ((0, 1), (2, 3), (4,))
  assert group_runs([(False, False)] * 3) == ((0, 1, 2),)
  assert group_runs([]) == ()


def _run(scan: bool, mesh_sizes, num_devices, steps=3):
  config = demo_config(f'--config.model.scan_layers={scan}', '--config.optimizer.warmup_steps=1',
                       '--config.tasks.image_text.batch_size=16', *MOE)
  abstract, history, state = train_steps(config, mesh_sizes, num_devices, steps)
  return abstract, history, jax.device_get(state['params'])


# One mesh: scan and unrolled agree on it, sharded like each other (a 1-device run adds nothing
# the 8-device one does not check, at another two compilations).
@pytest.mark.parametrize('mesh_sizes,num_devices', [({'data': 2, 'fsdp': 2, 'expert': 2}, 8)])
def test_scanned_encoder_trains_like_unrolled(mesh_sizes, num_devices):
  assert jax.device_count() >= num_devices, 'tests/conftest.py sets 8 CPU devices'
  abstract_u, hist_u, params_u = _run(False, mesh_sizes, num_devices)
  abstract_s, hist_s, params_s = _run(True, mesh_sizes, num_devices)
  # Same parameter tree, shapes and shardings: checkpoints are interchangeable.
  assert jax.tree.structure(abstract_u) == jax.tree.structure(abstract_s)
  jax.tree.map(lambda a, b: (a.shape, a.sharding.spec) == (b.shape, b.sharding.spec) or
               pytest.fail(f'{a} != {b}'), abstract_u, abstract_s)
  for u, s in zip(hist_u, hist_s):
    np.testing.assert_allclose(s['loss'], u['loss'], rtol=1e-5)
    np.testing.assert_allclose(s['grad_norm'], u['grad_norm'], rtol=1e-4)
    # Per-layer MoE routing statistics survive the scan, layer by layer.
    assert jax.tree.structure(s['moe']) == jax.tree.structure(u['moe'])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 s['moe'], u['moe'])
  # Adam turns rounding-level gradient differences of rarely routed experts into differences of
  # a small fraction of one update (learning rate 1e-3 here), hence the absolute tolerance.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5),
               params_s, params_u)
