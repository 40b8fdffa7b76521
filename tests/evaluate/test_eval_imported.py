"""mmjax-evaluate on an imported open_clip model (tests/fixtures/interop) over mocked cifar10:
the model's own tokenizer (stored in the export) and its own preprocessing (shorter side
bicubic + centre crop, its mean/std), recorded in the report; the resize equals open_clip's."""

import json
import os
import sys

import numpy as np

import mock_tfds
from mmjax import config as config_lib
from mmjax.core.exports import params_io
from mmjax.core.exports import safetensors_format
from mmjax.data import recipe_resize
from mmjax.evaluate import __main__ as cli

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'export'))
import interop_fixtures as ifx  # noqa: E402


def _full_vocab(export: str) -> str:
  """The tiny fixture has 300 token rows; CLIP's tokenizer needs all 49,408 (extra rows random)."""
  params, config = params_io.load_params(export)
  table = params['embed_text']['token_embedding']
  extra = np.random.default_rng(0).normal(0, 0.05, (49408 - len(table), table.shape[1]))
  params['embed_text']['token_embedding'] = np.concatenate([table, extra]).astype(np.float32)
  with config.unlocked():
    config.model.vocab_size = 49408
  text = config_lib.to_json(config)
  with open(os.path.join(export, 'config.json'), 'w') as f:
    f.write(text)
  safetensors_format.save(os.path.join(export, 'model.safetensors'), params, text, 0, 'float32')
  return export


def test_recipe_resize_equals_open_clips_eval_transform():
  e = np.load(ifx.fixture('preprocess.npz'))
  for i in range(2):
    x = recipe_resize.resize_center_crop(e[f'image_{i}'], 32, 'bicubic')
    values = ((x / 255.0 - e['mean']) / e['std']).transpose(2, 0, 1)
    np.testing.assert_allclose(values, e['pixel_values'][i], atol=1e-5)


def test_evaluate_an_imported_model_with_its_own_preprocessing(tmp_path, capsys):
  root = str(tmp_path / 'tfds')
  mock_tfds.write_metadata(root, 'cifar10', {'train': 8, 'test': 24})
  export = _full_vocab(ifx.import_to('open_clip', str(tmp_path / 'imported')))
  out = tmp_path / 'eval'
  with mock_tfds.mocked():
    code = cli.main([f'--workdir={export}', '--datasets=cifar10', f'--output={out}',
                     f'--config.data_dir={root}'])
  printed = capsys.readouterr()
  assert code == 0, printed.err[-2000:]
  rep = json.loads((out / 'step_0.json').read_text())
  prep = rep['preprocessing']
  assert prep['tokenizer']['kind'] == 'clip_bpe' and prep['tokenizer']['eot_id'] == 49407
  assert prep['image']['resize'] == 'bicubic' and prep['image']['crop'] == 'centre'
  assert '0.48145466' in prep['image']['normalize']
  zs = rep['zero_shot']['cifar10/image']
  assert 0.0 <= zs['top1'] <= zs['top5'] <= 1.0 and rep['datasets']['cifar10']['num_examples'] == 24
  assert np.isfinite(zs['mean_per_class_recall'])
