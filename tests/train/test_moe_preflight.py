"""Bad MoE settings stop the run before anything is written, with one sentence."""

import pytest

from mmjax.train import loop
from mmjax_testing import demo_config


@pytest.mark.parametrize('overrides, message', [
    (('--config.model.moe.num_experts=4', '--config.model.moe.every=2',
      '--config.model.moe.top_k=5'), 'top_k=5 must be between 1 and num_experts=4'),
    (('--config.model.moe.num_experts=6', '--config.model.moe.every=2',
      '--config.mesh.data=2', '--config.mesh.expert=4'), 'not divisible by the expert mesh axis'),
    (('--config.model.moe.num_experts=4', '--config.model.moe.last_n=9'),
     'exceed the encoder depth'),
])
def test_bad_moe_config_is_caught_before_training(tmp_path, overrides, message):
  config = demo_config(*overrides)
  workdir = tmp_path / 'run'
  with pytest.raises(ValueError, match=message):
    loop.preflight(config, str(workdir))
  assert not workdir.exists()
