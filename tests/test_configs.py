"""Every config in configs/ loads, validates, and opens its docstring with a runnable command."""

import glob
import importlib.util
import os

import pytest

from mmjax_testing import ROOT
from mmjax import config as config_lib
from mmjax.data.tasks import tasks_from_config

CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py')))


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_loads_and_documents_a_command(path):
  spec = importlib.util.spec_from_file_location('cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  first = module.__doc__.strip().splitlines()[0]
  assert first.startswith('python -m ') and 'configs/' + os.path.basename(path) in first, first
  config = config_lib.load_config(path)
  for key in config_lib.REQUIRED_KEYS:
    assert key in config
  assert tasks_from_config(config)


def test_config_files_exist():
  names = {os.path.basename(p) for p in CONFIGS}
  assert {'demo.py', 'demo_moe.py', 'imp_base.py', 'imp_moe_base.py', 'imp_moe_large.py',
          'ablation_agd.py'} <= names
