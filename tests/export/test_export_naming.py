"""Flat parameter names follow the documented scheme and round-trip; format parsing."""

import re

import jax
import numpy as np
import pytest
from flax import nnx

from mmjax.core.exports import param_names as naming
from mmjax.export.errors import ExportError
from mmjax.export.run import parse_formats
from mmjax.models.model import build_model
from mmjax_testing import demo_config

NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$')


def _params(*overrides):
  model = nnx.eval_shape(lambda: build_model(demo_config(*overrides), nnx.Rngs(0)))
  return nnx.to_pure_dict(nnx.state(model))


def test_names_follow_the_documented_scheme():
  params = _params('--config.model.num_layers=2')
  flat = naming.flatten(params)
  assert all(NAME.match(n) for n in flat)
  # the examples the naming module documents, with the shapes it gives (W=128, H=4, K=32)
  assert flat['encoder.block_0.attn.qkv.kernel'].shape == (128, 3, 4, 32)
  assert flat['encoder.block_1.attn.out.kernel'].shape == (4, 32, 128)
  assert flat['embed_image.proj.kernel'].shape == (8 * 8 * 3, 128)
  assert flat['proj_text.kernel'].shape == (128, 128)
  assert flat['head_mmjax_digits.kernel'].shape == (128, 10)
  assert flat['log_temperature_image_text'].shape == ()
  assert len(flat) == len(jax.tree.leaves(params))


def test_moe_names_and_round_trip():
  params = _params('--config.model.num_layers=2', '--config.model.moe.num_experts=4',
                   '--config.model.moe.every=2')
  flat = naming.flatten(params)
  assert flat['encoder.block_1.mlp.wi.kernel'].shape == (4, 128, 512)
  assert 'encoder.block_1.mlp.router.kernel' in flat
  back = naming.unflatten(flat)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  assert list(flat) == sorted(flat)


def test_dotted_key_is_refused():
  with pytest.raises(ValueError, match="contains '.'"):
    naming.flatten({'a.b': np.zeros(1)})


def test_parse_formats():
  assert parse_formats('all') == ('orbax', 'safetensors', 'stablehlo')
  assert parse_formats('stablehlo, orbax') == ('orbax', 'stablehlo')
  assert parse_formats(['safetensors']) == ('safetensors',)
  with pytest.raises(ExportError, match="unknown export format 'onnx'"):
    parse_formats('orbax,onnx')
