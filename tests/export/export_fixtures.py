"""Helpers for the export tests: a tiny trained-looking run (checkpoint + config.json) and
reference embeddings computed directly from the NNX model."""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from flax import nnx

from mmjax_testing import demo_config
from mmjax import config as config_lib
from mmjax.data.digits import builder as digits_builder
from mmjax.export import inputs as inputs_lib
from mmjax.models.model import build_model
from mmjax.train import state as state_lib
from mmjax.core import checkpointing
from mmjax.core import partitioning

STEP = 3


def shared_data_dir(tmp_path_factory) -> str:
  """The digits dataset, built once per session (shared with the evaluation tests)."""
  base = tmp_path_factory.getbasetemp()
  root = (base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base) / 'tfds'
  digits_builder.build(str(root))
  return str(root)


def make_run(workdir: str, *overrides: str, mesh_sizes=None, with_eval: bool = True):
  """Saves a freshly initialised tiny model as step STEP of `workdir` (+ config.json).

  Returns (config, params as numpy). Without `with_eval` the config has no evaluation
  datasets and names a tokenizer file that does not exist, so the export reads no data at all:
  parity runs on a synthetic batch and the export holds no tokenizer.
  """
  config = demo_config('--config.model.num_layers=1', *overrides)
  if not with_eval:
    config.evaluation.datasets = ml_collections.ConfigDict()
    config.text.tokenizer = os.path.join(workdir, 'no_tokenizer.model')
  sizes = mesh_sizes or {'data': 1}
  n = int(np.prod(list(sizes.values())))
  mesh = partitioning.make_mesh(sizes, devices=jax.devices()[:n])
  graphdef, _, shardings = state_lib.abstract_train_state(config, mesh)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  state = {**state, 'step': state['step'] + STEP}
  os.makedirs(workdir, exist_ok=True)
  ckpt = checkpointing.Checkpointer(workdir)
  ckpt.save(STEP, state, {'agd_step': STEP})
  ckpt.close()
  config_lib.save_config(config, workdir)
  return config, jax.tree.map(np.asarray, jax.device_get(state['params']))


_GRAPHDEFS, _EMBED = {}, {}


def _graphdef(config):
  key = config_lib.to_json(config)
  if key not in _GRAPHDEFS:
    _GRAPHDEFS[key] = nnx.split(nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0))))[0]
  return _GRAPHDEFS[key]


def batch(config, modality: str, rows: int, seed: int = 1) -> dict:
  """Seeded inputs of the export's input sizes for one modality."""
  mods = ('image', 'video', 'audio', 'text')
  sizes = inputs_lib.input_sizes(config, mods)
  return inputs_lib.synthetic_inputs(modality, sizes, rows, int(config.model.vocab_size), seed)


def reference(config, params, modality: str, inputs: dict) -> np.ndarray:
  """Embeddings `[n, embed_dim]` straight from the model's `embed` (jitted, float32 params)."""
  graphdef = _graphdef(config)
  key = (id(graphdef), modality)
  if key not in _EMBED:
    _EMBED[key] = jax.jit(lambda p, x: nnx.merge(graphdef, p).embed(x, modality))
  params = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
  return np.asarray(_EMBED[key](params, inputs))
