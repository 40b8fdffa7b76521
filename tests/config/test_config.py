"""Config loading, overrides and validation; bad input ends in one sentence and writes nothing."""

import os

import pytest

from mmjax import config as config_lib
from mmjax.core import partitioning
from mmjax.train import __main__ as train_cli
from mmjax_testing import ROOT, demo_config


def test_overrides_keep_types_and_presets_resolve():
  c = demo_config('--config.total_steps=7', '--config.mesh.fsdp=4', '--config.model.qk_norm=true',
                  '--config.optimizer.learning_rate=3e-4')
  assert c.total_steps == 7 and c.mesh.fsdp == 4 and c.model.qk_norm is True
  assert c.optimizer.learning_rate == pytest.approx(3e-4)
  assert (c.model.num_layers, c.model.width, c.model.num_heads, c.model.mlp_dim) == (4, 128, 4, 512)


def test_unknown_key_suggests_closest():
  with pytest.raises(config_lib.ConfigError, match=r'config\.total_step\b.*Did you mean config\.total_steps'):
    demo_config('--config.total_step=5')


def test_wrong_type_is_named():
  with pytest.raises(config_lib.ConfigError, match=r'config\.total_steps expects a int'):
    demo_config('--config.total_steps=abc')


def test_mesh_sizes_resolve_and_must_divide():
  assert partitioning.mesh_shape({'data': -1, 'fsdp': 4}, 8) == {
      'data': 2, 'fsdp': 4, 'tensor': 1, 'expert': 1}
  with pytest.raises(partitioning.MeshError, match='does not divide 8 devices'):
    partitioning.mesh_shape({'data': -1, 'fsdp': 3}, 8)
  with pytest.raises(partitioning.MeshError, match='uses 6 devices but 8'):
    partitioning.mesh_shape({'data': 2, 'tensor': 3}, 8)


def test_saved_config_round_trips(tmp_path):
  c = demo_config()
  path = config_lib.save_config(c, str(tmp_path))
  again = config_lib.config_from_json(open(path).read())
  assert again.to_dict() == c.to_dict()


def _train_cli(workdir, capsys, *extra):
  """`python -m mmjax.train` in process (the same `main` the command runs): (exit code, stderr)."""
  capsys.readouterr()
  code = train_cli.main([f'--config={ROOT}/configs/demo.py', f'--workdir={workdir}', *extra])
  return code, capsys.readouterr().err


@pytest.mark.parametrize('extra, message', [
    (('--config.totl_steps=3',), 'Did you mean config.total_steps'),
    (('--config.log_every=often',), 'expects a int'),
    (('--config.mesh.fsdp=3',), 'does not divide 8 devices'),
    (('--config.mesh.data=3',), 'uses 3 devices but 8 are available'),
])
def test_cli_bad_input_one_sentence_nothing_written(tmp_path, capsys, extra, message):
  workdir = tmp_path / 'run'
  code, err = _train_cli(workdir, capsys, *extra)
  assert code == 2, err[-2000:]
  last = err.strip().splitlines()[-1]
  assert last.startswith('error: ') and message in last
  assert 'Traceback' not in err
  assert not workdir.exists()


def test_cli_unwritable_workdir(tmp_path, capsys):
  blocker = tmp_path / 'file'
  blocker.write_text('keep me')
  code, err = _train_cli(blocker / 'run', capsys)
  assert code == 2
  assert 'cannot be created' in err.strip().splitlines()[-1]
  assert blocker.read_text() == 'keep me'
