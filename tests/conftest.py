"""pytest setup: 8 simulated CPU devices, fast-compiling XLA flags, and tests/ on sys.path, so
every test folder imports the shared helpers (`from mmjax_testing import demo_config, ...`).

The device count is set here, before anything initialises a JAX backend, so the mesh tests run
(and never skip) however pytest is started; a count already in `XLA_FLAGS` is kept.
"""

import os
import sys

DEVICE_COUNT_FLAG = '--xla_force_host_platform_device_count'
# The test programs are tiny, so compiling them is most of the suite's time. LLVM at -O0 and
# XLA:CPU's elemental fusion emitter instead of its newer fusion emitters compile a one-layer
# train step about 4x faster. They change how XLA:CPU emits machine code, not the JAX program,
# its sharding or its collectives, which the tests check. Flags already in XLA_FLAGS are kept.
FAST_COMPILE_FLAGS = {'--xla_backend_optimization_level': '0',
                      '--xla_cpu_use_fusion_emitters': 'false'}
if DEVICE_COUNT_FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {DEVICE_COUNT_FLAG}=8".strip()
for _flag, _value in FAST_COMPILE_FLAGS.items():
  if _flag not in os.environ['XLA_FLAGS']:
    os.environ['XLA_FLAGS'] += f' {_flag}={_value}'

import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mmjax_testing import demo_config  # noqa: E402


@pytest.fixture
def config():
  return demo_config()


# The longest files (measured with --durations on 2 cores) run first: `make test` deals whole
# files to two workers (--dist=loadfile) in collection order, and a long file dealt last would
# leave one worker running it alone while the other idles.
LONGEST_FIRST = ('test_packaging.py', 'sweep/test_sweep_cli.py', 'train/test_multiprocess.py',
                 'models/test_fourm.py', 'models/test_routed_model.py', 'models/test_multimae.py',
                 'test_cli_output.py', 'train/test_freezing.py', 'train/test_long_range_configs.py',
                 'train/test_generative_sharded.py', 'train/test_resume.py')


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  def rank(item):
    path = item.nodeid.split('::')[0]
    return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith(name)),
                len(LONGEST_FIRST))
  items.sort(key=rank)  # stable: every file's tests stay together and in their order
