"""python -m mmjax.export --format=hf_clip: a transformers CLIPModel folder. Without torch the
folder is read back by the hf_clip importer, itself checked against transformers' embeddings
(test_import_weights.py); tools/make_interop_fixtures.py --verify_hf_clip checks it with
transformers itself (recorded in the report of issue 27)."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

import interop_fixtures as ifx
from mmjax import config as config_lib
from mmjax.core.exports import layout
from mmjax.core.exports import safetensors_format
from mmjax.export import __main__ as export_cli
from mmjax.export import hf_clip, published
from mmjax.export.load import load_model
from mmjax.models.model import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _native_export(out: str) -> str:
  """A CLIP-shaped mmjax model (configs/siglip.py:clip, factorised positions, tanh GELU) with
  every parameter moved off its init (so the patch bias is non-zero), as an export."""
  config = config_lib.load_config(os.path.join(ROOT, 'configs', 'siglip.py') + ':clip', [
      '--config.model.towers.text.pooling=eot', '--config.model.proj_bias=False',
      '--config.model.pos_embed=factorized', '--config.model.activation=gelu_tanh',
      '--config.model.num_layers=1', '--config.model.towers.text.num_layers=1'])
  model = jax.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: (0.05 * rng.normal(size=a.shape)).astype(np.float32),
                        nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  os.makedirs(out)
  text = config_lib.to_json(config)
  with open(os.path.join(out, layout.CONFIG), 'w') as f:
    f.write(text)
  safetensors_format.save(os.path.join(out, layout.SAFETENSORS), params, text, 3, 'float32')
  layout.write_json(os.path.join(out, layout.REPORT), {'step': 3})
  return out


def test_native_model_exports_and_reads_back_to_the_same_embeddings(tmp_path, capsys):
  src = _native_export(str(tmp_path / 'native'))
  out = str(tmp_path / 'hf')
  assert export_cli.main([f'--workdir={src}', '--format=hf_clip', f'--output={out}']) == 0
  cfg = json.load(open(os.path.join(out, 'config.json')))
  assert cfg['architectures'] == ['CLIPModel'] and cfg['text_config']['hidden_size'] == 64
  assert cfg['vision_config']['hidden_act'] == 'gelu_pytorch_tanh'
  ref = np.load(os.path.join(out, hf_clip.PARITY_FILE))
  back = published.read_hf_clip(out)
  model = nnx.merge(nnx.split(jax.eval_shape(lambda: build_model(back.config, nnx.Rngs(0))))[0],
                    back.params)
  embed = nnx.jit(lambda model, batch, m: model.embed(batch, m), static_argnums=2)
  np.testing.assert_allclose(embed(model, {'image': ref['pixels']}, 'image'), ref['image'],
                             atol=1e-5)
  np.testing.assert_allclose(
      embed(model, {'text': ref['ids'], 'text_mask': ref['ids'] != 0}, 'text'), ref['text'],
      atol=1e-5)
  mmjax_model, _ = load_model(src)   # the reference is the source model's own embedding
  np.testing.assert_allclose(embed(mmjax_model, {'image': ref['pixels']}, 'image'),
                             ref['image'], atol=1e-6)


def test_imported_clip_round_trips_to_its_own_tensors(tmp_path):
  src = ifx.import_to('hf_clip', str(tmp_path / 'imported'))
  out = str(tmp_path / 'hf')
  assert export_cli.main([f'--workdir={src}', '--format=hf_clip', f'--output={out}']) == 0
  before, after = load_file(ifx.fixture('hf_clip', 'model.safetensors')), load_file(
      os.path.join(out, 'model.safetensors'))
  assert set(before) == set(after)
  pos, cls = 'vision_model.embeddings.position_embedding.weight', \
      'vision_model.embeddings.class_embedding'
  for k in sorted(set(before) - {pos, cls}):
    np.testing.assert_allclose(after[k], before[k], atol=1e-7, err_msg=k)
  # the class token's position row is folded into the class embedding
  np.testing.assert_allclose(after[pos][1:], before[pos][1:], atol=1e-7)
  np.testing.assert_allclose(after[cls] + after[pos][0], before[cls] + before[pos][0], atol=1e-6)


def test_what_does_not_map_is_named(tmp_path, capsys):
  src = ifx.import_to('hf_siglip', str(tmp_path / 'siglip'))
  out = tmp_path / 'hf'
  assert export_cli.main([f'--workdir={src}', '--format=hf_clip', f'--output={out}']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and "image pooling 'map'" in err and '\n' not in err
  assert not out.exists()
