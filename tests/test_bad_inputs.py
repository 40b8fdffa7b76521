"""Bad input through the real command lines (train, evaluate, export, tools), in process: exit 2,
one sentence on stderr, nothing written. The closing note of issue 14 tabulates more cases."""

from __future__ import annotations

import os
import re

import pytest

from mmjax.config import checks as config_checks
from mmjax.evaluate import __main__ as evaluate_cli
from mmjax.export import __main__ as export_cli
from mmjax.kernels import select
from mmjax.train import __main__ as train_cli
from mmjax_testing import ROOT
from tools import inspect_checkpoint, plot_metrics

DEMO = os.path.join(ROOT, 'configs', 'demo.py')


def _train(workdir, *args):
  return train_cli.main([f'--config={DEMO}', f'--workdir={workdir}', *args])


CASES = {
    'negative learning rate': (
        lambda w: _train(w, '--config.optimizer.learning_rate=-1'),
        r'config\.optimizer\.learning_rate must be a number > 0, got -1\.0: change it in the '
        r'config file or with --config\.optimizer\.learning_rate=VALUE\.'),
    'zero batch size': (
        lambda w: _train(w, '--config.tasks.image_text.batch_size=0'),
        r'config\.tasks\.image_text\.batch_size must be a positive integer, got 0: .*'),
    'DropToken rate above 1': (
        lambda w: _train(w, '--config.tasks.video_text.drop_token=1.5'),
        r'config\.tasks\.video_text\.drop_token must be a probability in \[0, 1\], got 1\.5: .*'),
    'unknown attention kernel': (
        lambda w: _train(w, '--config.model.attention_impl=flashy'),
        r"config\.model\.attention_impl must be one of 'auto', 'xla', 'pallas', 'cudnn', got "
        r"'flashy': .*"),
    'bad config argument': (
        lambda w: train_cli.main([f'--config={ROOT}/configs/ablation_agd.py:foo', f'--workdir={w}']),
        r"configs/ablation_agd\.py:\d+: configs/ablation_agd\.py takes ':agd' or ':mixed', got "
        r"'foo'\."),
    'config file with a syntax error': (
        lambda w: train_cli.main([f'--config={_broken_config(w)}', f'--workdir={w}/run']),
        r'.*broken\.py:2: .+\.'),
    'unknown config key': (
        lambda w: _train(w, '--config.optimizer.lr=1'),
        r'unknown config key config\.optimizer\.lr\. Did you mean .*\?'),
    'evaluate a workdir without checkpoints': (
        lambda w: evaluate_cli.main([f'--config={DEMO}', f'--workdir={w}']),
        r'no checkpoint in .*/checkpoints: train first .*\.'),
    'export an unknown format': (
        lambda w: export_cli.main([f'--workdir={w}', f'--output={w}/out', '--format=onnx']),
        r"unknown export format 'onnx': choose from orbax, safetensors, stablehlo or all\."),
    'inspect a path that is not a run': (
        lambda w: inspect_checkpoint.main([f'{w}/nothing']),
        r'.*nothing is not a training workdir, checkpoint step, export, .*\.'),
    'train with a data dir that does not exist': (
        lambda w: _train(w, f'--config.data_dir={w}/no_such_dir'),
        r'data_dir .*/w/no_such_dir does not exist: pass --config\.data_dir= an existing TFDS '
        r'data dir \(or leave it empty for \$TFDS_DATA_DIR\)\.'),
    'plot a run without metrics': (
        lambda w: plot_metrics.main([f'--workdir={w}']),
        r'no metrics file at .*/metrics\.jsonl: point --workdir at a training run\.'),
}


def _broken_config(where) -> str:
  path = os.path.join(where, 'broken.py')
  with open(path, 'w') as f:
    f.write('def get_config(arg=None):\n  return dict(seed=\n')
  return path


def _listing(root) -> list[str]:
  return sorted(os.path.relpath(os.path.join(d, n), root)
                for d, dirs, files in os.walk(root) for n in dirs + files)


@pytest.mark.parametrize('name', sorted(CASES))
def test_bad_input_is_one_sentence_exit_2_and_writes_nothing(name, tmp_path, capsys):
  command, pattern = CASES[name]
  workdir = tmp_path / 'w'
  workdir.mkdir()
  code = command(str(workdir))
  before = {'broken.py'} if 'syntax' in name else set()
  err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
  assert code == 2, err
  assert len(err) == 1 and err[0].startswith('error: '), err
  assert re.fullmatch(pattern, err[0][len('error: '):]), err[0]
  assert set(_listing(workdir)) == before, 'something was written'


def test_the_config_checks_know_the_kernels_choices():
  assert config_checks.ATTENTION_IMPLS == select.ATTENTION_IMPLS
  assert config_checks.RAGGED_MATMUL_IMPLS == select.RAGGED_MATMUL_IMPLS
  assert config_checks.SCAN_IMPLS == select.SCAN_IMPLS
