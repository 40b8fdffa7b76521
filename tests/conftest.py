"""pytest setup: 8 simulated CPU devices, and tests/ on sys.path, so every test folder imports
the shared helpers (`from mmjax_testing import demo_config, synthetic_batch`).

The device count is set here, before anything initialises a JAX backend, so the mesh tests run
(and never skip) however pytest is started; a count already in `XLA_FLAGS` is kept.
"""

import os
import sys

DEVICE_COUNT_FLAG = '--xla_force_host_platform_device_count'
if DEVICE_COUNT_FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {DEVICE_COUNT_FLAG}=8".strip()

import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mmjax_testing import demo_config  # noqa: E402


@pytest.fixture
def config():
  return demo_config()
