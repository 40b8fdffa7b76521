"""`--workdir=gs://bucket/run`: the path layer and a whole run against a local GCS emulator.

The emulator (gcp-storage-emulator, from PyPI) serves the GCS JSON API on 127.0.0.1; etils
epath reaches it through gcsfs (STORAGE_EMULATOR_HOST), orbax's arrays through tensorstore's GCS
driver (TENSORSTORE_GCS_HTTP_URL), TensorBoard through google-cloud-storage. Nothing leaves the
machine.
"""

from __future__ import annotations

import json
import os

import pytest

from gcs_testing import gcs  # noqa: F401 - the emulator fixture
from mmjax import paths
from run_testing import run, subprocess_env, train_argv, write_config


@pytest.mark.parametrize('where', ['local', 'gcs'])
def test_path_layer_writes_appends_and_renames(tmp_path, where, request):
  base = str(tmp_path) if where == 'local' else f'gs://bucket/{tmp_path.name}'
  if where == 'gcs':
    request.getfixturevalue('gcs')
  run_dir = paths.join(base, 'run')
  paths.makedirs(run_dir)
  target = paths.join(run_dir, 'config.json')
  paths.write_text(target, '{"a": 1}')
  paths.write_text(target, '{"a": 2}')
  paths.append_text(paths.join(run_dir, 'metrics.jsonl'), '{"step": 1}\n')
  paths.append_text(paths.join(run_dir, 'metrics.jsonl'), '{"step": 2}\n')
  assert json.loads(paths.read_text(target)) == {'a': 2}
  assert paths.read_text(paths.join(run_dir, 'metrics.jsonl')).splitlines() == [
      '{"step": 1}', '{"step": 2}']
  paths.rename(target, target + '.old')
  assert not paths.exists(target) and paths.exists(target + '.old')
  assert paths.resolve(base) == (os.path.abspath(base) if where == 'local' else base)
  if where == 'local':
    assert not os.path.exists(target + '.tmp')   # the atomic write's temporary is gone


@pytest.mark.slow
def test_a_run_with_a_gs_workdir_trains_checkpoints_and_resumes(tmp_path, gcs):
  from etils import epath
  config = write_config(tmp_path)
  workdir = 'gs://bucket/runs/tiny'
  env = subprocess_env(**gcs)
  argv = train_argv(config, workdir, '--config.total_steps=4', '--config.checkpoint_every=2')
  code, out = run(argv, tmp_path / 'log', env=env)
  assert code == 0, out[-4000:]
  code, out = run(train_argv(config, workdir, '--config.total_steps=6',
                             '--config.checkpoint_every=2'), tmp_path / 'log', env=env)
  assert code == 0, out[-4000:]
  assert 'resumed from checkpoint step 4' in out
  root = epath.Path(workdir)
  # On gs:// rows are written as segment objects (metrics.jsonl.parts/), never by rewriting.
  from mmjax.train import metrics_writer
  steps = [json.loads(l)['step'] for l in metrics_writer.metrics_lines(f'{workdir}/metrics.jsonl')
           if 'loss' in json.loads(l)]
  assert steps == [1, 2, 3, 4, 5, 6]
  assert not (root / 'metrics.jsonl').exists() and (root / 'metrics.jsonl.parts').exists()
  assert any((root / 'plots').iterdir())              # plots go through the path layer too
  assert not (root / 'trainer.lease.json').exists()   # the lease was released
  assert json.loads((root / 'config.json').read_text())['total_steps'] == 6
  assert sorted(p.name for p in (root / 'checkpoints').iterdir()) == ['2', '4', '6']
  assert any((root / 'tensorboard').iterdir())
  assert not os.path.exists('gs:')                     # nothing went to a local 'gs:' folder
