"""M3CoL mixup: the transform's statistics, its exact mixing, and the train step running it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mmjax import config as config_lib
from mmjax.core import partitioning
from mmjax.core.tasks import task_signatures
from mmjax.train import __main__ as train_main
from mmjax.train import mixup, state as state_lib, step as step_lib
from mmjax_testing import ROOT, synthetic_batch


@pytest.mark.parametrize('alpha', [0.4, 1.0, 2.0])
def test_mixing_weights_are_beta_and_perm_is_a_permutation(alpha):
  x = jnp.arange(4096, dtype=jnp.float32)[:, None]
  mixed, perm, lam = mixup.mixup(jax.random.key(0), x, alpha)
  lam, perm, mixed = np.asarray(lam), np.asarray(perm), np.asarray(mixed)
  assert sorted(perm.tolist()) == list(range(4096))
  assert np.mean(perm == np.arange(4096)) < 0.01  # a shuffle, not the identity
  # Kolmogorov-Smirnov against Beta(alpha, alpha); mean 1/2, variance 1 / (4 (2 alpha + 1)).
  assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
  np.testing.assert_allclose(lam.mean(), 0.5, atol=0.03)
  np.testing.assert_allclose(lam.var(), 1 / (4 * (2 * alpha + 1)), rtol=0.1)
  np.testing.assert_allclose(mixed[:, 0], lam * np.arange(4096) + (1 - lam) * perm, rtol=1e-5)


def test_mixing_is_per_example_over_all_axes_and_varies_with_the_key():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(16, 4, 4, 3)).astype(np.float32)
  mixed, perm, lam = mixup.mixup(jax.random.key(3), jnp.asarray(x), 1.0)
  expect = (np.asarray(lam)[:, None, None, None] * x
            + (1 - np.asarray(lam))[:, None, None, None] * x[np.asarray(perm)])
  np.testing.assert_allclose(mixed, expect, rtol=1e-5, atol=1e-6)
  _, perm2, lam2 = mixup.mixup(jax.random.key(4), jnp.asarray(x), 1.0)
  assert not np.array_equal(lam, lam2) and not np.array_equal(perm, perm2)


def test_m3col_config_trains_with_the_mixup_loss_and_checks_pairs():
  config = config_lib.load_config(f'{ROOT}/configs/m3col.py', ['--config.model.num_layers=1'])
  mesh = partitioning.make_mesh({'data': 2}, devices=jax.devices()[:2])
  graphdef, _, shardings = state_lib.abstract_train_state(config, mesh)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  train_step = step_lib.make_train_step(config, graphdef, mesh, shardings)
  (task,) = task_signatures(config)
  mixup.check_task(task)
  losses, nce = [], []
  for i in range(3):
    state, metrics = train_step(state, synthetic_batch(task, seed=0), task)
    losses.append(float(metrics['m3col/image_text']))
    nce.append(float(metrics['nce/image_text']))
    np.testing.assert_allclose(metrics['loss'], metrics['nce/image_text']
                               + metrics['m3col/image_text'], rtol=1e-5)
  # The M3CoL term draws a new mixing each step; the clean NCE on a fixed batch must fall.
  assert all(np.isfinite(losses)) and nce[-1] < nce[0]
  with pytest.raises(ValueError, match='only image, video, audio'):
    mixup.check_task(dataclasses.replace(task, m3col=(('text', 'image'),)))
  with pytest.raises(ValueError, match='not one of its contrast pairs'):
    mixup.check_task(dataclasses.replace(task, contrast=()))


def test_cli_refuses_an_unmixable_pair_before_writing(tmp_path, capsys):
  workdir = tmp_path / 'run'
  rc = train_main.main([f'--config={ROOT}/configs/m3col.py', f'--workdir={workdir}',
                        '--config.tasks.image_text.m3col=text-image'])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and not workdir.exists()
  assert len(err) == 1 and "mixes 'text'" in err[0]
