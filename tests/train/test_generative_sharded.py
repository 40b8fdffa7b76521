"""MultiMAE and SyCoCa give the same losses on `data 8` and `data 2 x fsdp 2 x tensor 2`, and their
decoders' weights are sharded by their logical axes."""

import os

import jax
import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax_testing import ROOT, train_steps

MESHES = ({'data': 8}, {'data': 2, 'fsdp': 2, 'tensor': 2})
CASES = {
    'multimae': ('configs/multimae.py', 'multimae', ('loss', 'mae/image', 'mae/video', 'mae/audio'),
                 'mae_decoder_video'),
    'sycoca': ('configs/coca.py:sycoca', 'image_caption',
               ('loss', 'nce/image_text', 'caption/image', 'sycoca/image'), 'sycoca_decoder_image'),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_losses_agree_across_meshes(case):
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  path, task, keys, decoder = CASES[case]
  config = config_lib.load_config(os.path.join(ROOT, path), [
      '--config.optimizer.warmup_steps=1', '--config.model.num_layers=1',
      '--config.model.mae_decoder.layers=1', f'--config.tasks.{task}.batch_size=16'])
  runs = []
  for sizes in MESHES:
    abstract, hist, _ = train_steps(config, sizes, 8, 2, task_name=task)
    runs.append(np.array([[float(m[k]) for k in keys] for m in hist]))
  assert np.all(np.isfinite(runs[0]))
  assert runs[0][-1, 0] != runs[0][0, 0]  # the steps trained
  np.testing.assert_allclose(runs[1], runs[0], rtol=1e-4)
  # On the last mesh, the decoder's matrices are split over fsdp (and tensor where named).
  dec = abstract['params'][decoder]
  specs = {'inp': dec['inp']['kernel'].sharding.spec,
           'qkv': dec['block_0']['attn']['q']['kernel'].sharding.spec,
           'mlp': dec['block_0']['mlp']['wi']['kernel'].sharding.spec}
  assert specs['inp'][0] == 'fsdp', specs
  assert specs['qkv'] == ('fsdp', 'tensor', None) or tuple(specs['qkv'])[:2] == ('fsdp', 'tensor'), specs
  assert tuple(specs['mlp']) == ('fsdp', 'tensor'), specs
