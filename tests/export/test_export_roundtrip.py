"""Export a tiny model in every format (float32 and bfloat16), read each back, and check
embeddings, zero-shot predictions, the evaluation's restore path and fresh-process loading."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import export_fixtures as fx
from mmjax.core.exports import layout
from mmjax.core.exports import param_names as naming
from mmjax.core import partitioning
from mmjax.core.exports.params_io import load_params
from mmjax.evaluate import restore
from mmjax.evaluate.errors import EvalError
from mmjax.export import export_run
from mmjax.export.load import load_stablehlo
from mmjax.train import state as state_lib

MODALITIES = ('image', 'video', 'audio', 'text')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """{'config', 'params', 'workdir', 'float32': export dir, 'bfloat16': export dir}."""
  data_dir = fx.shared_data_dir(tmp_path_factory)
  root = tmp_path_factory.mktemp('export')
  workdir = str(root / 'run')
  config, params = fx.make_run(workdir, f'--config.data_dir={data_dir}')
  out = {'config': config, 'params': params, 'workdir': workdir}
  for dtype in ('float32', 'bfloat16'):
    out[dtype] = str(root / f'export_{dtype}')
    out[dtype + '_report'] = export_run(workdir, out[dtype], 'all', dtype, quiet=True)
  return out


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_report_passes_on_eval_data(exported, dtype):
  out = exported[dtype]
  with open(os.path.join(out, layout.REPORT)) as f:
    report = json.load(f)
  assert report == exported[dtype + '_report']
  assert report['step'] == fx.STEP and report['dtype'] == dtype
  par = report['parity']
  assert par['pass'] and par['batch']['source'] == 'mmjax_digits/test'
  assert par['batch']['rows'] == 32 and par['batch']['synthetic_modalities'] == []
  limit = 1e-5 if dtype == 'float32' else 2e-2
  for fmt in layout.FORMATS:
    for m in MODALITIES:
      assert par['formats'][fmt][m]['max_abs_diff'] <= limit
    for m, zs in par['formats'][fmt]['zero_shot'].items():
      if dtype == 'float32':  # the same predictions, so the same top-1
        assert zs['agreement'] == 1.0 and zs['top1'] == zs['reference_top1']
      else:
        assert zs['agreement'] >= 0.9 and abs(zs['top1'] - zs['reference_top1']) <= 0.1
  with open(os.path.join(exported['workdir'], 'config.json')) as f, \
       open(os.path.join(out, layout.CONFIG)) as g:
    assert f.read() == g.read()
  assert os.path.getsize(os.path.join(out, layout.TOKENIZER)) > 1000


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
@pytest.mark.parametrize('where', ['', layout.ORBAX_DIR, layout.SAFETENSORS])
def test_reloaded_params_embed_like_the_checkpoint(exported, dtype, where):
  config, params = exported['config'], exported['params']
  loaded, cfg = load_params(os.path.join(exported[dtype], where) if where else exported[dtype])
  assert cfg.model.to_dict() == config.model.to_dict()
  want = jax.tree.map(lambda p: p.astype(jax.numpy.dtype(dtype)), params)
  jax.tree.map(np.testing.assert_array_equal, loaded, want)  # exact, in the stored dtype
  for m in MODALITIES:
    inputs = fx.batch(config, m, 5)
    ref = fx.reference(config, params, m, inputs)
    got = fx.reference(config, loaded, m, inputs)
    np.testing.assert_allclose(got, ref, atol=1e-5 if dtype == 'float32' else 2e-2)


STABLEHLO_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import jax, numpy as np
    d = sys.argv[1]
    sig = json.load(open(os.path.join(d, 'signature.json')))
    for m, spec in sig['functions'].items():
      fn = jax.export.deserialize(bytearray(open(os.path.join(d, spec['file']), 'rb').read()))
      for rows in (1, 7):
        args = [np.load(os.path.join(sys.argv[2], f'{m}_{rows}_{i["name"]}.npy'))
                for i in spec['inputs']]
        np.save(os.path.join(sys.argv[2], f'out_{m}_{rows}.npy'), np.asarray(fn.call(*args)))
    assert not [k for k in sys.modules if k.split('.')[0] in ('mmjax', 'flax', 'orbax')]
''')


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_stablehlo_runs_in_a_fresh_jax_only_process(exported, dtype, tmp_path):
  config, params = exported['config'], exported['params']
  inputs = {}
  for m in MODALITIES:
    for rows in (1, 7):
      inputs[m, rows] = fx.batch(config, m, rows, seed=rows)
      for name, x in inputs[m, rows].items():
        np.save(tmp_path / f'{m}_{rows}_{name}.npy', x)
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['JAX_PLATFORMS'] = 'cpu'
  run = subprocess.run([sys.executable, '-c', STABLEHLO_SCRIPT,
                        os.path.join(exported[dtype], 'stablehlo'), str(tmp_path)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  for (m, rows), x in inputs.items():
    got = np.load(tmp_path / f'out_{m}_{rows}.npy')
    assert got.shape == (rows, config.model.embed_dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, fx.reference(config, params, m, x),
                               atol=1e-5 if dtype == 'float32' else 2e-2)


def test_stablehlo_signature_and_loader(exported):
  out, config = exported['float32'], exported['config']
  with open(os.path.join(out, 'stablehlo', layout.SIGNATURE)) as f:
    sig = json.load(f)
  assert set(sig['functions']) == set(MODALITIES) and sig['step'] == fx.STEP
  image = sig['functions']['image']
  assert image['inputs'][0] == {**image['inputs'][0], 'name': 'image',
                                'shape': ['b', 32, 32, 3], 'dtype': 'float32', 'range': [-1, 1]}
  assert image['outputs'][0]['shape'] == ['b', config.model.embed_dim]
  text = sig['functions']['text']
  assert [i['name'] for i in text['inputs']] == ['text', 'text_mask']
  assert text['inputs'][0]['shape'] == ['b', 16] and text['inputs'][0]['dtype'] == 'int32'
  prep = text['preprocessing']
  assert prep['lowercase'] is True and prep['length'] == 16 and prep['pad_id'] == 0
  assert os.path.isfile(os.path.join(out, 'stablehlo', sig['tokenizer_file']))
  assert sig['functions']['audio']['preprocessing']['sample_rate'] == 8000
  fns = load_stablehlo(out)
  x = fx.batch(config, 'text', 3)
  np.testing.assert_allclose(np.asarray(fns['text'](x['text'], x['text_mask'])),
                             fx.reference(config, exported['params'], 'text', x), atol=1e-5)


SAFETENSORS_SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    from safetensors.numpy import load_file
    from safetensors import safe_open
    with safe_open(sys.argv[1], 'numpy') as f:
      meta = f.metadata()
    flat = load_file(sys.argv[1])
    np.savez(sys.argv[2], **flat)
    print(json.dumps({'meta': meta, 'names': sorted(flat)}))
    assert not [k for k in sys.modules if k.split('.')[0] in ('mmjax', 'jax', 'flax')]
''')


def test_safetensors_loads_with_numpy_only(exported, tmp_path):
  path = os.path.join(exported['float32'], layout.SAFETENSORS)
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  run = subprocess.run([sys.executable, '-c', SAFETENSORS_SCRIPT, path, str(tmp_path / 'p.npz')],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-3000:]
  got = json.loads(run.stdout)
  want = naming.flatten(exported['params'])
  assert got['names'] == sorted(want)
  assert 'encoder.block_0.attn.qkv.kernel' in got['names']
  meta = got['meta']
  assert meta['format'] == 'mmjax-params' and int(meta['step']) == fx.STEP
  assert meta['dtype'] == 'float32' and 'encoder.block_0.attn.qkv.kernel' in meta['naming']
  assert json.loads(meta['config'])['model']['num_layers'] == 1
  with np.load(tmp_path / 'p.npz', allow_pickle=False) as arrays:
    for name, value in want.items():
      np.testing.assert_array_equal(arrays[name], value)


def test_evaluation_and_init_from_read_the_export(exported):
  assert jax.device_count() >= 8, 'tests/conftest.py sets 8 CPU devices'
  config, params = exported['config'], exported['params']
  mesh = partitioning.make_mesh({'data': 2, 'fsdp': 4})
  step, _, got = restore.restore_params(config, exported['float32'], mesh)
  assert step == fx.STEP
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(got), params)
  abstract = state_lib.abstract_train_state(config, mesh)[1]['params']
  kernel = ('encoder', 'block_0', 'mlp', 'wi', 'kernel')
  leaf = got
  for k in kernel:
    leaf, abstract = leaf[k], abstract[k]
  assert leaf.sharding == abstract.sharding
  with pytest.raises(EvalError, match=f'export of step {fx.STEP}, not 9'):
    restore.restore_params(config, exported['float32'], mesh, step=9)
  # init_from: bf16 export -> float32 params sharded as in training
  abstract = state_lib.abstract_train_state(config, mesh)[1]['params']
  for source in (exported['bfloat16'], os.path.join(exported['bfloat16'], layout.SAFETENSORS)):
    loaded, _ = load_params(source, abstract)
    assert {x.dtype for x in jax.tree.leaves(loaded)} == {np.dtype('float32')}
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-6),
                 jax.device_get(loaded), params)
    assert all(x.sharding == a.sharding for x, a in
               zip(jax.tree.leaves(loaded), jax.tree.leaves(abstract)))


def test_inspect_lists_each_kind_of_path(exported, capsys):
  from tools import inspect_checkpoint as inspect
  workdir, out = exported['workdir'], exported['bfloat16']
  qkv = 'encoder.block_0.attn.qkv.kernel'
  for path, head, dtype in (
      (workdir, f'training checkpoint {workdir}/checkpoints/{fx.STEP}', 'float32'),
      (os.path.join(workdir, 'checkpoints', str(fx.STEP)), 'training checkpoint', 'float32'),
      (out, f'export {out}: step {fx.STEP}, bfloat16', 'bfloat16'),
      (os.path.join(out, layout.ORBAX_DIR), 'params-only orbax', 'bfloat16'),
      (os.path.join(out, layout.SAFETENSORS), 'safetensors', 'BF16')):
    text = '\n'.join(inspect.describe(path))
    assert text.startswith(head), text[:200]
    row = next(line for line in text.splitlines() if line.strip().startswith(qkv + ' '))
    assert row.split()[1:] == ['(128,', '3,', '4,', '32)', dtype]
    assert 'model: size=tiny layers=1 width=128' in text
  text = '\n'.join(inspect.describe(os.path.join(out, 'stablehlo')))
  assert "image.jax_exported: (image ['b', 32, 32, 3] float32) -> embedding ['b', 128]" in text
  assert inspect.main([os.path.join(out, 'missing')]) == 2
  assert 'is not a training workdir' in capsys.readouterr().err
