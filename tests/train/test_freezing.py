"""Freezing by parameter path: no optimizer state, no update, exports bit-identical for frozen
paths after training from an `init_from` export, resume, and the CLI's refusal without it."""

import os

import jax
import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax.core import checkpointing, partitioning
from mmjax.core.exports import param_names
from mmjax.core.exports.params_io import load_params
from mmjax.export import export_run
from mmjax.train import __main__ as train_main
from mmjax.train import freezing, loop, state as state_lib
from mmjax_testing import ROOT, demo_config

ENCODER = r'encoder\..*'
TINY = ('--config.model.num_layers=1', '--config.log_every=1', '--config.checkpoint_every=100',
        '--config.data.threads=1', '--config.optimizer.warmup_steps=1',
        '--config.tasks.image_text.batch_size=8', '--config.tasks.video_text.batch_size=8',
        '--config.tasks.audio_text.batch_size=8', '--config.tasks.image_classify.batch_size=8')


def _bytes(tree) -> int:
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _abstract(*overrides):
  config = demo_config('--config.model.num_layers=1', *overrides)
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  return state_lib.abstract_train_state(config, mesh)[1]


def test_frozen_parameters_hold_no_optimizer_state():
  plain = _abstract()
  frozen = _abstract(f'--config.optimizer.freeze={ENCODER}')
  encoder = _bytes(plain['params']['encoder'])
  assert encoder > 0
  # Adam keeps mu and nu per trained parameter; a frozen one keeps neither.
  assert _bytes(frozen['opt_state']) == _bytes(plain['opt_state']) - 2 * encoder
  paths = [freezing.path_name(p) for p, _ in
           jax.tree_util.tree_flatten_with_path(frozen['opt_state'])[0]]
  assert paths and not any('encoder.' in p for p in paths)


def test_bad_patterns_are_refused_with_one_sentence():
  params = _abstract()['params']
  with pytest.raises(freezing.FreezeError, match='not a regular expression'):
    freezing.check(params, ('encoder[',))
  with pytest.raises(freezing.FreezeError, match='matches no parameter'):
    freezing.check(params, ('encoderz\\..*',))
  with pytest.raises(freezing.FreezeError, match='every parameter'):
    freezing.check(params, ('.*',))
  names = freezing.check(params, (ENCODER,))
  assert names == sorted(param_names.flatten(params['encoder'], 'encoder.'))


def _export(workdir, out, config, state_params=None):
  """Writes `config` + params (fresh, or `state_params`) as a run at step 1, exports it."""
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  graphdef, _, shardings = state_lib.abstract_train_state(config, mesh)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  state = {**state, 'step': state['step'] + 1}
  os.makedirs(workdir)
  ckpt = checkpointing.Checkpointer(workdir)
  ckpt.save(1, state, {'agd_step': 1})
  ckpt.close()
  config_lib.save_config(config, workdir)
  export_run(workdir, out, 'orbax', quiet=True)


def test_frozen_paths_are_bit_identical_after_training_and_resume(tmp_path):
  base = demo_config(*TINY, '--config.seed=7')
  _export(str(tmp_path / 'pre'), str(tmp_path / 'pre_export'), base)
  config = demo_config(*TINY, '--config.total_steps=3', f'--config.optimizer.freeze={ENCODER}',
                       f'--config.init_from={tmp_path / "pre_export"}')
  run = str(tmp_path / 'run')
  loop.train(config, run)
  config.total_steps = 5  # resume: the frozen run's optimizer state restores from its checkpoint
  loop.train(config, run)
  export_run(run, str(tmp_path / 'post_export'), 'orbax', quiet=True)
  before = param_names.flatten(load_params(str(tmp_path / 'pre_export'))[0])
  after = param_names.flatten(load_params(str(tmp_path / 'post_export'))[0])
  assert sorted(before) == sorted(after)  # export layout unchanged
  frozen = [n for n in before if n.startswith('encoder.')]
  assert frozen
  for n in frozen:
    assert before[n].tobytes() == after[n].tobytes(), n
  moved = [n for n in before if not n.startswith('encoder.')
           and before[n].tobytes() != after[n].tobytes()]
  assert 'embed_image.proj.kernel' in moved and 'proj_text.kernel' in moved
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  abstract = state_lib.abstract_train_state(config, mesh)[1]
  step, state, _ = checkpointing.Checkpointer(run).restore_latest_good(abstract)
  assert step == 5
  assert not any('encoder.' in freezing.path_name(p) for p, _ in
                 jax.tree_util.tree_flatten_with_path(state['opt_state'])[0])


def test_meta_transformer_without_init_from_exits_2_before_writing(tmp_path, capsys):
  workdir = tmp_path / 'meta'
  rc = train_main.main([f'--config={os.path.join(ROOT, "configs/meta_transformer.py")}',
                        f'--workdir={workdir}'])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and not workdir.exists()
  assert len(err) == 1 and 'config.init_from' in err[0] and 'configs/demo.py' in err[0]
  rc = train_main.main([f'--config={os.path.join(ROOT, "configs/meta_transformer.py")}',
                        f'--workdir={workdir}', f'--config.init_from={tmp_path / "nothing"}'])
  assert rc == 2 and not workdir.exists()
  assert 'holds no params-only export' in capsys.readouterr().err
