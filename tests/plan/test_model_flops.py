"""Model FLOPs (attention as its mathematics) against hardware FLOPs (kernels as compiled), and
the MFU / HFU they make of a roofline, checked against hand counts."""

import jax
import jax.numpy as jnp
import pytest

from mmjax_testing import demo_config
from mmjax.core import partitioning
from mmjax.core.tasks import task_signatures
from mmjax.kernels import backend as kernel_backend
from mmjax.plan import compile_report, flop_count, hardware
from mmjax.train import state as state_lib
from mmjax.train import step as step_lib


def _train_step_counts(impl: str):
  """(model, hardware) FLOPs of a one-layer demo model's image-text train step."""
  config = demo_config('--config.model.num_layers=1', f'--config.model.attention_impl={impl}')
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  graphdef, abstract, shardings = state_lib.abstract_train_state(config, mesh)
  train_step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  task = next(t for t in task_signatures(config) if t.name == 'image_text')
  args = (abstract, step_lib.abstract_batch(task, config, mesh), task)
  with kernel_backend.target('tpu'):  # as tools.aot traces: the TPU kernels' tiles
    model = flop_count.count_model_flops(lambda: train_step.trace(*args))
    hard = flop_count.count_jaxpr(train_step.trace(*args).jaxpr)
  jax.clear_caches()
  return model.flops, hard.flops


def test_one_layer_model_flops_agree_between_xla_and_pallas_attention():
  model_xla, hard_xla = _train_step_counts('xla')
  model_pallas, hard_pallas = _train_step_counts('pallas')
  assert model_xla == hard_xla  # no kernel: the program is its own mathematics
  assert model_pallas == pytest.approx(model_xla, rel=0.01)
  # the Pallas kernel as compiled does more: padded blocks, the forward recomputed backward
  assert hard_pallas > 1.05 * model_pallas


def test_ragged_dot_counts_each_row_once_forward_and_backward():
  m, k, n, groups = 12, 8, 4, 3
  sizes = jnp.array([5, 4, 3], jnp.int32)
  loss = lambda x, w: jax.lax.ragged_dot(x, w, sizes).sum()
  x, w = jnp.ones((m, k)), jnp.ones((groups, k, n))
  assert flop_count.count_flops(loss, x, w).flops == 2 * m * k * n
  # gradient: forward, d lhs (= dy @ w^T by group) and d rhs (= x^T @ dy by group)
  assert flop_count.count_flops(jax.grad(loss, argnums=(0, 1)), x, w).flops == 3 * 2 * m * k * n


def test_mfu_and_hfu_of_a_known_matmul_program():
  m = k = n = 4096
  chip = hardware.lookup_chip('TPU v5')
  x = jax.ShapeDtypeStruct((m, k), jnp.float32)
  compiled = jax.jit(lambda a, b: a @ b).lower(x, x).compile()
  model = flop_count.count_model_flops(lambda: jax.jit(lambda a, b: a @ b).trace(x, x)).flops
  assert model == 2 * m * k * n
  hbm = compile_report.cost_stats(compiled)['bytes_accessed']  # >= 3 * 64 MiB: 0.07 ms
  # compute-bound (0.30 ms of compute): at peak, MFU is 100 %
  roof = compile_report.roofline(None, hbm, chip, model_flops=model, hardware_flops=model)
  assert roof['bound'] == 'compute'
  assert roof['step_s'] == pytest.approx(2 * m * k * n / 459e12, rel=1e-6)
  assert roof['mfu'] == pytest.approx(1.0) and roof['hfu'] == pytest.approx(1.0)
  # a kernel doing 1.5x the mathematics (padding) takes 1.5x as long: MFU 2/3, HFU still 100 %
  roof = compile_report.roofline(None, hbm, chip, model_flops=model, hardware_flops=1.5 * model)
  assert roof['mfu'] == pytest.approx(1 / 1.5) and roof['hfu'] == pytest.approx(1.0)
