"""`--workdir=gs://bucket/run`: the path layer and a whole run against a local GCS emulator.

The emulator (gcp-storage-emulator, from PyPI) serves the GCS JSON API on 127.0.0.1; etils
epath reaches it through gcsfs (STORAGE_EMULATOR_HOST), orbax's arrays through tensorstore's GCS
driver (TENSORSTORE_GCS_HTTP_URL), TensorBoard through google-cloud-storage. Nothing leaves the
machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from mmjax import paths
from test_resume import run, subprocess_env, train_argv, write_config

EMULATOR = '''import sys, time
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
  # Real GCS names the object's generation in x-goog-generation; tensorstore's OCDBT reads it
  # to update a manifest written earlier, and fails with "Malformed StorageGeneration" without.
  _download(request, response, storage, *args, **kwargs)
  try:
    obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
  except NotFound:
    return
  response['x-goog-generation'] = str(obj['generation'])
  response['x-goog-metageneration'] = str(obj['metageneration'])


objects.download = download


def _precondition_failed(request, response, storage, object_id):
  # Real GCS honours ifGenerationMatch (0: the object must not exist) with 412; the workdir
  # lease (mmjax/core/lease.py) relies on it.
  want = request.query.get('ifGenerationMatch')
  if not want or object_id is None:
    return False
  try:
    current = str(storage.get_file_obj(request.params['bucket_name'], object_id)['generation'])
  except NotFound:
    current = '0'
  if current == want[0]:
    return False
  from http import HTTPStatus as Status
  response.status = Status.PRECONDITION_FAILED
  response.json({'error': {'code': 412, 'message': 'Precondition Failed',
                           'errors': [{'message': 'Precondition Failed', 'reason': 'conditionNotMet'}]}})
  return True


_insert, _delete = objects.insert, objects.delete


def insert(request, response, storage, *args, **kwargs):
  name = request.query.get('name', [None])[0]
  if name is None and isinstance(getattr(request, 'data', None), dict):
    name = (request.data.get('meta') or {}).get('name')
  if _precondition_failed(request, response, storage, name):
    return
  return _insert(request, response, storage, *args, **kwargs)


def delete(request, response, storage, *args, **kwargs):
  if _precondition_failed(request, response, storage, request.params.get('object_id')):
    return
  return _delete(request, response, storage, *args, **kwargs)


objects.insert, objects.delete = insert, delete
from gcp_storage_emulator import server as server_module  # its routes take objects.download now
from http import HTTPStatus


class Status:
  # A method the emulator lacks (gcsfs's rename tries the moveTo API first) answers 400, not 501:
  # gcsfs then falls back to copy and delete at once instead of retrying a 5xx for 30 s.
  def __getattr__(self, name):
    return HTTPStatus.BAD_REQUEST if name == 'NOT_IMPLEMENTED' else getattr(HTTPStatus, name)


server_module.HTTPStatus = Status()
create_server = server_module.create_server
server = create_server('127.0.0.1', int(sys.argv[1]), in_memory=True, default_bucket='bucket')
server.start()
print('ready', flush=True)
time.sleep(3600)
'''


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def gcs(tmp_path_factory):
  """A running emulator with bucket `bucket`; yields the environment that points clients at it."""
  port = _free_port()
  script = tmp_path_factory.mktemp('gcs') / 'emulator.py'
  script.write_text(EMULATOR)
  proc = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
  url = f'http://127.0.0.1:{port}'
  env = {'STORAGE_EMULATOR_HOST': url, 'TENSORSTORE_GCS_HTTP_URL': url,
         'GOOGLE_CLOUD_PROJECT': 'test'}
  saved = {k: os.environ.get(k) for k in env}
  try:
    assert proc.stdout.readline().strip() == 'ready'
    os.environ.update(env)
    yield env
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
    proc.kill()
    proc.wait()


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
