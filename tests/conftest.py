"""pytest setup: tests/ on sys.path, so every test folder imports the shared helpers
(`from mmjax_testing import demo_config, synthetic_batch`)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mmjax_testing import demo_config  # noqa: E402


@pytest.fixture
def config():
  return demo_config()
