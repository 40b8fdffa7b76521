"""A local GCS emulator for tests (gcp-storage-emulator from PyPI, on 127.0.0.1): the `gcs` fixture
yields the environment that points etils/gcsfs, tensorstore and google-cloud-storage at it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


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


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def gcs(tmp_path_factory):
  """A running emulator with bucket `bucket`; yields the environment that points clients at it."""
  port = free_port()
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
