"""tools.import_weights: open_clip, transformers CLIP and SigLIP checkpoints (tiny random models
written by those libraries, tests/fixtures/interop) become mmjax exports whose embeddings equal
the libraries' own within 1e-4; bad input is one sentence, exit 2, nothing written."""

import json
import os
import shutil

import numpy as np
import pytest
from flax import nnx

import interop_fixtures as ifx
from mmjax.core.exports import layout
from mmjax.export.load import load_model, load_tokenizer
from mmjax.prepare.teacher import Teacher
from tools import import_weights


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
  root = tmp_path_factory.mktemp('imports')
  out = {'open_clip': str(root / 'open_clip')}
  code = import_weights.main([
      'open_clip', f'--config={ifx.fixture("open_clip", "open_clip_config.json")}',
      f'--weights={ifx.fixture("open_clip", "open_clip_model.safetensors")}',
      f'--output={out["open_clip"]}'])   # the user path, once
  assert code == 0
  for fmt in ('hf_clip', 'hf_siglip'):
    out[fmt] = ifx.import_to(fmt, str(root / fmt))
  return out


@pytest.mark.parametrize('fmt', ifx.FORMATS)
def test_embeddings_equal_the_source_library(exports, fmt):
  model, config = load_model(exports[fmt])
  e = ifx.expected(fmt)
  embed = nnx.jit(lambda model, batch, m: model.embed(batch, m), static_argnums=2)
  image = np.asarray(embed(model, {'image': e['pixels']}, 'image'))
  text = np.asarray(embed(model, {'text': e['ids'], 'text_mask': e['ids'] != 0}, 'text'))
  assert image.dtype == np.float32 and image.shape == e['image'].shape
  np.testing.assert_allclose(image, e['image'], atol=1e-4, rtol=0)
  np.testing.assert_allclose(text, e['text'], atol=1e-4, rtol=0)
  report = layout.read_json(os.path.join(exports[fmt], layout.REPORT))
  assert report['self_check']['pass'] and report['imported']['format'] == fmt
  if fmt == 'hf_siglip':  # learnt scale and bias of the sigmoid loss come along
    assert config.model.contrast_loss == 'sigmoid'
    np.testing.assert_allclose(float(model.logit_bias('image', 'text')), e['logit_bias'], 1e-6)
    np.testing.assert_allclose(1.0 / float(model.temperature('image', 'text')),
                               np.exp(e['logit_scale']), 1e-5)


def test_stored_tokenizers_equal_the_libraries(exports):
  fx = json.load(open(ifx.fixture('tokenizers.json'), encoding='utf-8'))
  clip = load_tokenizer(exports['open_clip'])
  for length in (77, 10):
    ids = clip.tokenize(fx['texts'], length)
    assert ids.dtype == np.int32 and ids.shape == (len(fx['texts']), length)
    np.testing.assert_array_equal(ids, np.asarray(fx[f'open_clip_{length}']))
  siglip = load_tokenizer(exports['hf_siglip'])
  np.testing.assert_array_equal(siglip.tokenize(fx['texts'], 16), np.asarray(fx['siglip_16']))
  teacher = Teacher(exports['open_clip'])    # tools.reinforce_data's teachers read it too
  assert teacher.tokenizer.describe()['kind'] == 'clip_bpe'
  assert teacher.sizes == {'image_size': 32, 'text_length': 16}


def _fails(capsys, argv, *needles):
  code = import_weights.main(argv)
  err = capsys.readouterr().err.strip()
  assert code == 2, err
  assert err.startswith('error: ') and '\n' not in err, err
  for n in needles:
    assert n in err, err
  return err


def test_torch_pickles_are_refused_with_the_conversion(tmp_path, capsys):
  out = tmp_path / 'out'
  pt = tmp_path / 'open_clip_model.bin'
  pt.write_bytes(b'not read')
  err = _fails(capsys, ['open_clip', f'--config={ifx.fixture("open_clip", "open_clip_config.json")}',
                        f'--weights={pt}', f'--output={out}'], 'safetensors only', 'save_file')
  assert 'torch.load' in err
  folder = tmp_path / 'hf'
  shutil.copytree(ifx.fixture('hf_clip'), folder)
  os.rename(folder / 'model.safetensors', folder / 'pytorch_model.bin')
  _fails(capsys, ['hf_clip', f'--input={folder}', f'--output={out}'], 'pytorch_model.bin')
  assert not out.exists()


def test_unsupported_options_are_named(tmp_path, capsys):
  out = tmp_path / 'out'
  raw = json.load(open(ifx.fixture('open_clip', 'open_clip_config.json')))
  raw['model_cfg']['vision_cfg']['attentional_pool'] = True
  bad = tmp_path / 'open_clip_config.json'
  bad.write_text(json.dumps(raw))
  _fails(capsys, ['open_clip', f'--config={bad}',
                  f'--weights={ifx.fixture("open_clip", "open_clip_model.safetensors")}',
                  f'--output={out}'], 'vision_cfg.attentional_pool')
  folder = tmp_path / 'hf'
  shutil.copytree(ifx.fixture('hf_clip'), folder)
  cfg = json.load(open(folder / 'config.json'))
  cfg['text_config']['eos_token_id'] = 5
  (folder / 'config.json').write_text(json.dumps(cfg))
  _fails(capsys, ['hf_clip', f'--input={folder}', f'--output={out}'], 'text_config.eos_token_id')
  _fails(capsys, ['hf_siglip', f'--input={ifx.fixture("hf_clip")}', f'--output={out}'],
         'is a CLIPModel, not a SiglipModel')
  assert not out.exists()
