"""Builds `mmjax_digits` once per test session, by two builder processes started at once.

Under pytest-xdist every worker does this into the same directory (the run's shared temp root),
so the file lock and atomic rename of the build are exercised for real; `test_concurrent_build`
checks what the builder processes reported.
"""

import os
import subprocess
import sys

import ml_collections
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='session')
def digits_build(tmp_path_factory):
  """`{'root': data dir, 'results': [(returncode, stdout, stderr)] of the two builders}`."""
  base = tmp_path_factory.getbasetemp()
  root = (base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base) / 'tfds'
  root.mkdir(parents=True, exist_ok=True)
  cmd = [sys.executable, '-m', 'tools.build_data', 'digits', f'--data_dir={root}']
  env = {**os.environ,
         'PYTHONPATH': os.pathsep.join([ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p])}
  procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
  results = []
  for p in procs:
    out, err = p.communicate(timeout=300)
    results.append((p.returncode, out, err))
  return {'root': str(root), 'results': results}


@pytest.fixture(scope='session')
def digits_dir(digits_build):
  for code, _, err in digits_build['results']:
    assert code == 0, err[-3000:]
  return digits_build['root']


def make_config(data_dir: str, **data) -> ml_collections.ConfigDict:
  """The data keys of a run config (see mmjax/data/options.py)."""
  return ml_collections.ConfigDict({
      'data_dir': data_dir,
      'text': {'tokenizer': '', 'lowercase': True},
      'data': {'threads': 2, 'prefetch': 4, **data},
  })


@pytest.fixture()
def data_config(digits_dir):
  return make_config(digits_dir)


@pytest.fixture()
def config_with(digits_dir):
  """`config_with(**data_keys)`: a config over the built dataset with some `config.data` keys."""
  return lambda **data: make_config(digits_dir, **data)
