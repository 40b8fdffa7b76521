"""config.seeds: each source of randomness defaults to config.seed and can be set on its own."""

import jax
import numpy as np
import pytest

from mmjax_testing import demo_config
from mmjax import config as config_lib
from mmjax.seeds import Seeds, resolve_seeds
from mmjax.core import partitioning
from mmjax.train import loop, state as state_lib


def test_defaults_follow_config_seed_and_each_can_be_set():
  assert resolve_seeds(demo_config('--config.seed=5')) == Seeds(5, 5, 5, 5)
  c = demo_config('--config.seed=5', '--config.seeds.data=2', '--config.seeds.dropout=9')
  assert resolve_seeds(c) == Seeds(init=5, data=2, sampler=5, dropout=9)


def test_bad_seed_is_one_sentence():
  with pytest.raises(config_lib.ConfigError, match=r'config\.seeds\.init must be a non-negative'):
    resolve_seeds(demo_config('--config.seeds.init=-3'))


def _params(*overrides):
  config = demo_config('--config.model.num_layers=1', *overrides)
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  state = state_lib.create_train_state(config, mesh)
  return np.asarray(jax.device_get(state['params']['proj_image']['kernel']))


def test_init_seed_alone_changes_the_initial_parameters():
  base = _params()
  np.testing.assert_array_equal(base, _params('--config.seeds.data=7', '--config.seeds.sampler=7',
                                              '--config.seeds.dropout=7'))
  assert not np.array_equal(base, _params('--config.seeds.init=7'))
  np.testing.assert_array_equal(_params('--config.seeds.init=7'), _params('--config.seed=7'))


def test_sampler_seed_alone_changes_the_agd_draws(tmp_path):
  def draws(*overrides):
    _, _, sampler = loop.preflight(demo_config(*overrides), str(tmp_path / 'run'))
    return [sampler.task_index(s) for s in range(64)]
  base = draws()
  assert draws('--config.seeds.init=3', '--config.seeds.data=3') == base
  assert draws('--config.seeds.sampler=3') != base
