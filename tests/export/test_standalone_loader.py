"""`examples/load_safetensors.py` computes the same embeddings as mmjax (within 1e-5) in a
process where importing mmjax is impossible; the export carries a hub-style model card."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import export_fixtures as fx
from mmjax import config as config_lib
from mmjax.evaluate import report as report_lib
from mmjax.core.exports import layout
from mmjax.export import export_run, model_card

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, 'examples', 'load_safetensors.py')
# The example runs with `mmjax` blocked: any import of it raises ImportError.
RUNNER = ("import runpy, sys; sys.modules['mmjax'] = None; sys.argv = sys.argv[1:]; "
          "runpy.run_path(sys.argv[0], run_name='__main__')")

VARIANTS = {
    'mean_pooling': (),
    'cls_qknorm_waveform': ('--config.model.pooling=cls', '--config.model.qk_norm=True',
                            '--config.model.audio.features=waveform',
                            '--config.model.audio.patch_samples=256'),
}


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_example_matches_mmjax_without_importing_it(tmp_path, variant):
  workdir = str(tmp_path / 'run')
  config, params = fx.make_run(workdir, *VARIANTS[variant], with_eval=False)
  out = str(tmp_path / 'export')
  export_run(workdir, out, 'safetensors', 'float32', quiet=True)
  modalities = ['image', 'video', 'text', 'audio']   # audio: log-mel (default) and waveform
  inputs = {}
  for m in modalities:
    inputs.update(fx.batch(config, m, rows=5, seed=3))
  np.savez(tmp_path / 'inputs.npz', **inputs)

  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  run = subprocess.run([sys.executable, '-c', RUNNER, EXAMPLE, out,
                        f'--inputs={tmp_path / "inputs.npz"}', f'--out={tmp_path / "emb.npz"}'],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  got = np.load(tmp_path / 'emb.npz')
  assert sorted(got.files) == sorted(modalities)
  for m in modalities:
    x = {k: v for k, v in inputs.items() if k == m or (m == 'text' and k == 'text_mask')}
    want = fx.reference(config, params, m, x)
    assert got[m].shape == want.shape == (5, config.model.embed_dim)
    np.testing.assert_allclose(got[m], want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got[m], axis=-1), 1.0, atol=1e-5)


def test_export_has_config_and_model_card(tmp_path):
  workdir = str(tmp_path / 'run')
  config, _ = fx.make_run(workdir, with_eval=False)
  report_lib.write_report(report_lib.build_report(
      fx.STEP, zero_shot={'digits/image': {'top1': 0.5, 'top5': 0.875}},
      retrieval={'digits/image_to_text': {'R@1': 0.25, 'R@10': 0.75, 'R@5': 0.5}},
      linear_probe={'digits/image': {'top1': 0.625, 'train_top1': 1.0, 'l2': 0.001}},
      few_shot={'digits/image': {'1shot': {'top1': 0.125, 'top1_std': 0.0, 'l2': 1024.0},
                                 '10shot': {'top1': 0.375, 'top1_std': 0.0, 'l2': 1024.0}}}),
      report_lib.eval_dir(workdir))
  out = str(tmp_path / 'export')
  report = export_run(workdir, out, 'safetensors', 'float32', quiet=True)
  assert {layout.SAFETENSORS, layout.CONFIG, layout.MODEL_CARD} <= set(os.listdir(out))
  with open(os.path.join(out, layout.CONFIG)) as f:
    assert json.load(f)['model']['width'] == config.model.width
  card = open(os.path.join(out, layout.MODEL_CARD)).read()
  assert card.startswith('---\nlibrary_name: mmjax\n')
  for section in ('## Training data', '## Evaluation', '## Intended use',
                  '## Loading without mmjax'):
    assert section in card
  assert f'Trained for {fx.STEP} steps' in card
  for name in config.tasks:
    assert f'| {name} | mmjax_digits (train) |' in card
  assert '| digits/image | 50.00 | 87.50 |' in card  # the run's evaluation of that step
  assert '| | R@1 | R@5 | R@10 |' in card
  assert '| digits/image_to_text | 25.00 | 50.00 | 75.00 |' in card
  assert '| digits/image | 62.50 | 100.00 | 0.001 |' in card   # L2 as chosen, not x100
  assert '| digits/image | 12.50 | 37.50 | 1024 |' in card     # few-shot per shot, then L2
  # The loader the card cites ships with the package (mmjax.examples), and the files are
  # readable like any other the user writes (not private 0600).
  assert 'python -m mmjax.examples.load_safetensors' in card
  umask = os.umask(0)
  os.umask(umask)
  for name in os.listdir(out):
    if os.path.isfile(os.path.join(out, name)):
      assert os.stat(os.path.join(out, name)).st_mode & 0o777 == 0o666 & ~umask, name
  other = model_card.render(json.loads(config_lib.to_json(config)), workdir, 7, report)
  assert 'mmjax-evaluate --workdir=DIR --step=7' in other  # no evaluation of step 7 to quote
