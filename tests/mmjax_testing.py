"""Shared test helpers: the demo config with overrides, and synthetic batches for any task.

Imported as `from mmjax_testing import ...` (tests/conftest.py puts tests/ on sys.path).
"""

import os

import numpy as np

from mmjax import config as config_lib
from mmjax.train import step as step_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for a subprocess with `devices` CPU devices and this session's other flags
  (tests/conftest.py adds fast-compile flags)."""
  flag = '--xla_force_host_platform_device_count'
  kept = [f for f in os.environ.get('XLA_FLAGS', '').split() if not f.startswith(flag)]
  return ' '.join(kept + [f'{flag}={devices}'])


def demo_config(*overrides: str):
  """configs/demo.py with the given `--config.k=v` overrides."""
  return config_lib.load_config(os.path.join(ROOT, 'configs/demo.py'), list(overrides))


def synthetic_batch(task, seed: int = 0, batch_size: int | None = None) -> dict:
  """Random inputs of the task's shapes; text masks mark a random-length prefix as real."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, (shape, dtype) in step_lib.batch_spec(task, batch_size).items():
    if key == 'text':
      out[key] = rng.integers(1, 100, shape).astype(np.int32)
    elif key == 'text_mask':
      lengths = rng.integers(3, shape[-1] + 1, shape[:-1])
      out[key] = (np.arange(shape[-1]) < lengths[..., None]).astype(np.int32)
    elif key.endswith('_mask'):          # other masks (point clouds): a random-length prefix
      lengths = rng.integers(max(1, shape[-1] // 2), shape[-1] + 1, shape[:-1])
      out[key] = (np.arange(shape[-1]) < lengths[..., None]).astype(np.int32)
    elif key == 'label':
      out[key] = rng.integers(0, 10, shape).astype(np.int32)
    elif np.dtype(dtype) == np.uint8:    # pixels
      out[key] = rng.integers(0, 256, shape).astype(np.uint8)
    elif np.dtype(dtype) == np.int16:    # audio
      out[key] = np.clip(rng.normal(scale=8000, size=shape), -32768, 32767).astype(np.int16)
    else:
      out[key] = rng.normal(size=shape).astype(np.float32)
  return out


def tpu_devices(name: str) -> list:
  """Compile-only devices of the TPU slice `name` (e.g. 'v5p-8'); skips the test, saying why,
  where libtpu is not installed."""
  import pytest  # pylint: disable=g-import-not-at-top
  from mmjax.plan import topology  # pylint: disable=g-import-not-at-top
  try:
    import libtpu  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    pytest.skip(f'libtpu is not importable ({e}); TPU ahead-of-time compile needs it')
  return topology.get_topology(name)


def train_steps(config, mesh_sizes: dict, num_devices: int, steps: int, task_name='image_text'):
  """`steps` train steps of one task signature on a fresh mesh, synthetic batches seeded 0, 1, ...

  Returns `(abstract_state, [metrics per step, on the host], final state)`.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from mmjax.core.tasks import task_signatures  # pylint: disable=g-import-not-at-top
  from mmjax.core import partitioning  # pylint: disable=g-import-not-at-top
  from mmjax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  mesh = partitioning.make_mesh(mesh_sizes, devices=jax.devices()[:num_devices])
  graphdef, abstract, shardings = state_lib.abstract_train_state(config, mesh)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  train_step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  task = next(t for t in task_signatures(config) if t.name == task_name)
  history = []
  for i in range(steps):
    batch = jax.device_put(synthetic_batch(task, seed=i), partitioning.batch_sharding(mesh))
    state, metrics = train_step(state, batch, task)
    history.append(jax.device_get(metrics))
  return abstract, history, state
