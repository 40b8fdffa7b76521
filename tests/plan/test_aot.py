"""TPU topology names, AOT meshes, and compiling for TPU on a CPU-only machine."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from mmjax.plan import compile_report
from mmjax.plan import hardware
from mmjax.plan import topology
from mmjax_testing import tpu_devices
from tools import aot


@pytest.mark.parametrize('name, chips, jax_name, wrap', [
    ('v5p-8', 4, 'v5:2x2x1', False),  # docs/v5p: 2x2x1 = 8 cores = 4 chips
    ('v5p-256', 128, 'v5:4x4x8', True),  # 4x4x8 = 256 cores = 128 chips, two cubes
    ('v5p-12288', 6144, 'v5:16x16x24', True),  # the largest single slice in docs/v5p
    ('v4-32', 16, 'v4:2x2x4', False),
    ('v4-128', 64, 'v4:4x4x4', True),
    ('v5e-8', 8, 'v5e:2x4', False),  # v5e names count chips
    ('v5litepod-16', 16, 'v5e:4x4', False),
    ('v6e-16', 16, 'v6e:4x4', False),
    ('v6e-256', 256, 'v6e:16x16', True),
])
def test_parse_names(name, chips, jax_name, wrap):
  spec = topology.parse_tpu_name(name)
  assert (spec.chips, spec.topology_name, spec.wrap[0]) == (chips, jax_name, wrap)
  assert int(np.prod(spec.shape)) == chips


@pytest.mark.parametrize('name', ['v5p-12', 'v5e-2', 'v6e-512', 'v4-7', 'v7x-8', 'tpu', 'v5p'])
def test_bad_names_list_what_is_accepted(name):
  with pytest.raises(topology.TopologyError, match='accepted: v4-N and v5p-N'):
    topology.parse_tpu_name(name)


def test_mesh_sizes_fill_the_rest_and_reject_mismatch():
  assert topology.resolve_mesh_sizes({'data': 2, 'fsdp': -1}, 8) == (2, 4, 1, 1)
  assert topology.resolve_mesh_sizes({'fsdp': 2, 'tensor': 2, 'expert': 2}, 8) == (1, 2, 2, 2)
  with pytest.raises(topology.TopologyError, match=r'uses 6 devices but there are 8.*1, 2, 4, 8'):
    topology.resolve_mesh_sizes({'data': 2, 'fsdp': 3}, 8)
  with pytest.raises(topology.TopologyError, match='at most one -1'):
    topology.resolve_mesh_sizes({'data': -1, 'fsdp': -1}, 8)


def test_mesh_over_cpu_devices():
  mesh = topology.make_aot_mesh({'data': 2, 'fsdp': -1}, jax.devices())
  assert dict(mesh.shape) == {'data': 2, 'fsdp': len(jax.devices()) // 2, 'tensor': 1, 'expert': 1}


# --- compiling for a real TPU topology (needs libtpu, not a TPU) ---


@pytest.fixture(scope='module')
def v5p_8():
  return tpu_devices('v5p-8')


def test_topology_devices(v5p_8):
  assert len(v5p_8) == 4
  assert {d.device_kind for d in v5p_8} == {'TPU v5'}
  assert hardware.chip_for_device(v5p_8[0]).name == 'TPU v5p'
  two = topology.get_topology('v5p-8', num_slices=2)
  mesh = topology.make_aot_mesh({'data': 2, 'fsdp': -1}, two, num_slices=2)
  assert [{d.slice_index for d in row.flat} for row in mesh.devices] == [{0}, {1}]
  with pytest.raises(topology.TopologyError, match='data must be a multiple of 2'):
    topology.make_aot_mesh({'fsdp': -1}, two, num_slices=2)


def test_sharded_mlp_compiles_for_tpu(v5p_8):
  mesh = topology.make_aot_mesh({'fsdp': -1}, v5p_8)
  embed, hidden, batch = 1024, 4096, 256
  weight = NamedSharding(mesh, P('fsdp', None))
  params = {'w1': jax.ShapeDtypeStruct((embed, hidden), jnp.bfloat16, sharding=weight),
            'w2': jax.ShapeDtypeStruct((hidden, embed), jnp.bfloat16, sharding=weight)}
  x = jax.ShapeDtypeStruct((batch, embed), jnp.bfloat16, sharding=NamedSharding(mesh, P('fsdp')))

  def loss(params, x):
    return jnp.mean((jax.nn.relu(x @ params['w1']) @ params['w2'] - x).astype(jnp.float32) ** 2)

  def step(params, x):
    grads = jax.grad(loss)(params, x)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)

  compiled = jax.jit(step, donate_argnums=0).lower(params, x).compile()
  record = compile_report.analyze(compiled, 'mlp', hardware.chip_for_device(v5p_8[0]))
  memory = record['memory']
  param_bytes = 2 * embed * hidden * 2 // 4  # two bf16 matrices, a quarter per device
  assert memory['argument_bytes'] == param_bytes + batch * embed * 2 // 4
  assert memory['alias_bytes'] == param_bytes  # donated params are updated in place
  assert 0 < memory['temp_bytes'] < 1 << 30 and memory['fits']
  # per device: forward 2 matmuls, backward 3 (no grad for x), 2*m*k*n FLOPs each
  matmul_flops = 5 * 2 * (batch // 4) * embed * hidden
  assert record['cost']['flops'] == pytest.approx(matmul_flops, rel=0.1)
  assert record['roofline']['step_s'] > 0


def test_pallas_kernel_lowers_with_mosaic(v5p_8):
  from jax.experimental import pallas as pl  # pylint: disable=g-import-not-at-top

  def kernel(x_ref, o_ref):
    o_ref[...] = x_ref[...] * 2.0 + 1.0

  def double_plus_one(x):
    spec = pl.BlockSpec((128, 256), lambda i: (i, 0))
    return pl.pallas_call(kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
                          grid=(x.shape[0] // 128,), in_specs=[spec], out_specs=spec)(x)

  mesh = topology.make_aot_mesh({}, v5p_8[:1])
  x = jax.ShapeDtypeStruct((512, 256), jnp.float32, sharding=NamedSharding(mesh, P()))
  compiled = jax.jit(double_plus_one).lower(x).compile()
  assert 'tpu_custom_call' in compiled.as_text()  # the Mosaic kernel, not an XLA fallback
  assert compiled.memory_analysis().argument_size_in_bytes == 512 * 256 * 4


# --- command line: bad input is one sentence and exit status 2 ---


def test_cli_rejects_unknown_topology(capsys):
  assert aot.main(['--config=configs/none.py', '--topology=v9-8']) == 2
  err = capsys.readouterr().err
  assert 'Unknown TPU topology' in err and 'v5p-N' in err and err.count('\n') == 1


def test_cli_rejects_bad_slice_count(capsys):
  assert aot.main(['--config=configs/none.py', '--topology=v5p-8', '--num_slices=0']) == 2
  assert 'num_slices must be a positive integer' in capsys.readouterr().err


# --- command line: the dry run on a small config ---

_TINY_CONFIG = '''
from mmjax.config.defaults import base_config, task


def get_config(arg=None):
  c = base_config()
  c.model.size = 'tiny'
  c.model.embed_dim = 64
  c.tasks.digits = task('mmjax_digits', 'image', int(arg or 8), classify='image', num_classes=10,
                        image_size=32)
  c.evaluation.datasets.digits = dict(dataset='mmjax_digits', split='test', modalities='image',
                                      batch_size=16, num_clips=1, image_size=32)
  return c
'''


@pytest.fixture
def tiny_config(tmp_path, v5p_8):
  del v5p_8  # only for its skip when libtpu is missing
  path = tmp_path / 'tiny.py'
  path.write_text(_TINY_CONFIG)
  return str(path)


def test_cli_dry_run_reports_memory_and_flops(tiny_config, tmp_path, capsys):
  out = tmp_path / 'aot.json'
  args = [f'--config={tiny_config}', '--topology=v5p-8', '--num_slices=2', f'--out={out}']
  assert aot.main(args) == 0  # two slices: the data axis (-1 = all 8 devices) crosses DCN
  report = json.loads(out.read_text())
  assert (report['devices'], report['mesh']['data'], report['fits']) == (8, 8, True)
  record, evaluation = report['functions']
  assert evaluation['name'] == 'eval digits/image' and evaluation['memory']['fits']
  from mmjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from mmjax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  mesh = topology.make_aot_mesh({'data': 8}, topology.get_topology('v5p-8', 2), num_slices=2)
  _, abstract, _ = state_lib.abstract_train_state(config_lib.load_config(tiny_config), mesh)
  params = sum(x.size for x in jax.tree.leaves(abstract['params']))
  # pure data parallelism: every device holds float32 params + Adam's two moments
  assert 3 * 4 * params <= record['memory']['argument_bytes'] < 3 * 4 * params + (1 << 20)
  traced = record['traced']
  assert traced['model_flops_global'] > 6 * params * 8  # > 6 N per example, 8 examples
  assert traced['hardware_flops_global'] >= traced['model_flops_global'] * 0.99
  roof = record['roofline']
  assert roof['step_s'] > 0 and 0 < roof['mfu'] < 1 and 0 < roof['hfu'] < 1
  # the data axis crosses the two slices: its gradient all-reduce has a DCN part
  assert record['collectives']['dcn_s'] > 0 and record['collectives']['ici_s'] > 0
  assert 'train digits@image_size=32' in capsys.readouterr().out


def test_cli_mesh_mismatch_lists_valid_sizes(tiny_config, capsys):
  args = [f'--config={tiny_config}', '--topology=v5p-8', '--config.mesh.data=3']
  assert aot.main(args) == 2
  err = capsys.readouterr().err
  assert 'uses 3 devices but there are 4' in err and '1, 2, 4' in err


def test_cli_config_that_does_not_fit_exits_1(tiny_config, capsys):
  args = [f'--config={tiny_config}:262144', '--topology=v5e-1', '--skip_eval']
  assert aot.main(args) == 1
  out = capsys.readouterr().out
  assert 'does not fit in TPU v5e HBM by' in out


def test_tasks_flag_selects_train_steps_and_names_unknown_ones():
  from mmjax_testing import demo_config
  config = demo_config()
  assert {t.name for t in aot.selected_signatures(config, '')} == set(config.tasks.keys())
  picked = aot.selected_signatures(config, 'image_text,audio_text')
  assert sorted(t.name for t in picked) == ['audio_text', 'image_text']
  with pytest.raises(ValueError, match=r"\['coco'\].*does not have"):
    aot.selected_signatures(config, 'image_text,coco')
