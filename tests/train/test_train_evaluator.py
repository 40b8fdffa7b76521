"""Training takes its periodic evaluator from the entry point (train never imports evaluate):
asking for periodic evaluation without one is a preflight error that writes nothing."""

import os

import pytest

from mmjax_testing import ROOT, demo_config
from mmjax.train import loop


def test_eval_every_without_an_evaluator_is_refused_before_writing(tmp_path):
  config = demo_config('--config.eval_every=5')
  workdir = str(tmp_path / 'run')
  with pytest.raises(loop.PreflightError, match='config.eval_every is set but no evaluator'):
    loop.train(config, workdir)
  assert not os.path.exists(workdir)


def test_the_train_entry_point_passes_the_evaluation_runner(monkeypatch, tmp_path):
  from mmjax.evaluate import one_model as runner  # pylint: disable=g-import-not-at-top
  from mmjax.train import __main__ as entry  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(entry, 'train', lambda config, workdir, evaluate=None: calls.append(
      (config.eval_every, workdir, evaluate)) or {'step': 0})
  workdir = str(tmp_path / 'run')
  assert entry.main([f'--config={ROOT}/configs/demo.py', f'--workdir={workdir}',
                     '--config.eval_every=7']) == 0
  assert calls == [(7, workdir, runner.evaluate_params)]
