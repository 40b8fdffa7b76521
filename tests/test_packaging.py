"""The installable package: the wheel's contents, configs by name, and the console scripts of a
wheel installed in a fresh venv, run from outside the checkout (built offline, no downloads)."""

import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata

import pytest

from mmjax import config as config_lib
from mmjax.config import files as config_paths
from mmjax.evaluate import __main__ as evaluate_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ('mmjax-train', 'mmjax-evaluate', 'mmjax-export', 'mmjax-aot')
_TOP_SKIP = {'.git', '.venv', 'runs', 'data', 'build', 'notebooks', 'mmjax.egg-info'}


def _skip(folder, names):
  top = os.path.abspath(folder) == ROOT
  return [n for n in names if (top and n in _TOP_SKIP) or n in ('__pycache__', '.pytest_cache')]


def build_wheel(tmp_path) -> str:
  """Builds the wheel from a copy of the checkout (the checkout stays clean), offline."""
  try:
    version = tuple(int(p) for p in metadata.version('setuptools').split('.')[:2])
  except metadata.PackageNotFoundError:
    version = ()
  if version < (70, 1):
    pytest.skip('building the wheel offline needs setuptools>=70.1 in this venv (pinned in '
                'requirements.txt): make venv, or pip install -r requirements.txt')
  src = tmp_path / 'src'
  shutil.copytree(ROOT, src, ignore=_skip)
  out = tmp_path / 'wheel'
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
                  '--no-index', '-w', str(out), str(src)], check=True)
  (wheel,) = out.glob('mmjax-*.whl')
  return str(wheel)


def test_wheel_holds_package_configs_tools_and_scripts(tmp_path):
  wheel = zipfile.ZipFile(build_wheel(tmp_path))
  names = wheel.namelist()
  for config in ('demo', 'demo_moe', 'imp_base', 'imp_moe_large'):
    assert f'mmjax/configs/{config}.py' in names
  assert 'mmjax/tools/aot.py' in names and 'mmjax/train/loop.py' in names
  assert 'mmjax/configs/sweeps/agd_vs_mixed.py' in names   # --sweep=agd_vs_mixed when installed
  assert not any(n.startswith(('tests/', 'configs/', 'tools/')) for n in names)
  (entry,) = [n for n in names if n.endswith('entry_points.txt')]
  text = wheel.read(entry).decode()
  for script in SCRIPTS:
    assert f'{script} = ' in text
  (meta,) = [n for n in names if n.endswith('METADATA')]
  meta = wheel.read(meta).decode()
  assert 'Requires-Dist: jax<0.11,>=0.10.2' in meta
  assert "Provides-Extra: tpu" in meta and "Provides-Extra: gpu" in meta
  assert 'extra == "dev"' in meta and 'Requires-Dist: pytest' in meta


def test_requirements_pin_every_dependency_within_its_range():
  """One list of dependencies (pyproject.toml) that requirements.txt pins, each pin inside it."""
  import tomllib
  from packaging.requirements import Requirement
  from packaging.utils import canonicalize_name
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    deps = [Requirement(d) for d in tomllib.load(f)['project']['dependencies']]
  pins = {}
  with open(os.path.join(ROOT, 'requirements.txt')) as f:
    for line in f:
      line = line.split('#')[0].strip()
      if line:
        name, _, version = line.partition('==')
        pins[canonicalize_name(name.split('[')[0])] = version
  for dep in deps:
    name = canonicalize_name(dep.name)
    assert name in pins, f'{dep.name} is in pyproject.toml but not pinned in requirements.txt'
    assert dep.specifier.contains(pins[name]), f'{dep.name}=={pins[name]} is outside {dep}'


def test_bare_config_name_is_the_shipped_config(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # no configs/ here: the name must not depend on the cwd
  assert config_paths.resolve_config_path('demo') == os.path.join(ROOT, 'configs', 'demo.py')
  by_name = config_lib.load_config('demo_moe:dropless', ['--config.total_steps=7'])
  by_path = config_lib.load_config(os.path.join(ROOT, 'configs', 'demo_moe.py:dropless'),
                                   ['--config.total_steps=7'])
  assert by_name.to_dict() == by_path.to_dict()
  assert by_name.model.moe.router == 'dropless' and by_name.total_steps == 7
  (tmp_path / 'demo').write_text('not a config')  # a file of that name wins over the shipped one
  assert config_paths.resolve_config_path('demo') == 'demo'
  with pytest.raises(config_lib.ConfigError, match='imp_moe_large'):
    config_lib.load_config('no_such_config')


def _runtime_closure(requirement_lines) -> list[metadata.Distribution]:
  """The installed distributions that `requirement_lines` need at run time (with the extras
  they name, none of mmjax's own), recursively, as this venv resolved them."""
  from packaging.requirements import Requirement
  from packaging.utils import canonicalize_name
  seen, dists = set(), {}
  todo = [(Requirement(r), ('',)) for r in requirement_lines]
  while todo:
    req, extras = todo.pop()
    if req.marker is not None and not any(req.marker.evaluate({'extra': e}) for e in extras):
      continue
    name = canonicalize_name(req.name)
    if (name, frozenset(req.extras)) in seen:
      continue
    seen.add((name, frozenset(req.extras)))
    dists.setdefault(name, metadata.distribution(req.name))
    todo += [(Requirement(r), ('',) + tuple(req.extras)) for r in dists[name].requires or []]
  return list(dists.values())


def _repack(dist: metadata.Distribution, folder: str) -> str:
  """A wheel of an installed distribution, from the files its RECORD lists (stored, not
  compressed: fast). Scripts outside site-packages are left out; pip writes entry points."""
  from packaging.utils import canonicalize_name
  info = next(f for f in dist.files if f.name == 'WHEEL' and f.parent.name.endswith('.dist-info'))
  tags = [line.split(':', 1)[1].strip() for line in info.read_text().splitlines()
          if line.startswith('Tag:')]
  parts = [sorted({t.split('-')[i] for t in tags}) for i in range(3)]
  name = canonicalize_name(dist.metadata['Name']).replace('-', '_')
  path = os.path.join(folder, f'{name}-{dist.version}-' + '-'.join('.'.join(p) for p in parts)
                      + '.whl')
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
    for f in dist.files:
      rel = str(f)
      if rel.startswith('..') or '__pycache__' in rel or rel.endswith(
          ('/INSTALLER', '/REQUESTED', '/direct_url.json')):
        continue
      source = dist.locate_file(f)
      if os.path.isfile(source):
        z.write(source, rel)
  return path


def _wheel_metadata(wheel: str, tmp_path) -> str:
  """The wheel's .dist-info folder, unpacked."""
  out = tmp_path / 'wheel_metadata'
  with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if '.dist-info/' in n]
    z.extractall(out, names)
  return str(out / names[0].split('/')[0])


def _isolated_venv(tmp_path, wheel: str) -> str:
  """A fresh venv with only the wheel and what its metadata requires, installed by pip offline
  from wheels repacked out of this dev venv: nothing of the dev environment is on its path, so a
  dependency missing from pyproject.toml fails here as it would for a user."""
  requires = metadata.Distribution.at(_wheel_metadata(wheel, tmp_path)).requires or []
  house = tmp_path / 'wheelhouse'
  house.mkdir()
  for dist in _runtime_closure(requires):
    _repack(dist, str(house))
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
  python = str(venv / 'bin' / 'python')
  subprocess.run([sys.executable, '-m', 'pip', '--python', python, 'install', '-q', '--no-index',
                  '--no-compile', f'--find-links={house}', wheel], check=True,
                 env={k: v for k, v in os.environ.items() if not k.startswith('PIP_')})
  return str(venv / 'bin')


IMPORT_EVERY_MODULE = """
import importlib, importlib.util, pkgutil, sys
import mmjax
bad = []
for m in pkgutil.walk_packages(mmjax.__path__, 'mmjax.'):
  try:
    importlib.import_module(m.name)
  except Exception as e:
    bad.append(f'{m.name}: {type(e).__name__}: {e}')
print('\\n'.join(bad) or 'all modules import')
print('checkout tools importable' if importlib.util.find_spec('tools') else 'no checkout tools')
sys.exit(1 if bad else 0)
"""
NOISE = ('Variant folder', 'is illegal', 'iCCP', 'examples/s]', 'it/s]', '\r')


@pytest.mark.slow
def test_installed_package_runs_every_documented_command_outside_the_checkout(tmp_path):
  """pip install of the wheel into a venv that cannot see the dev environment; from a folder
  outside the checkout: every module imports, train, evaluate (+ saved features), export, an
  export copied elsewhere evaluates without writing into its data dir, convert_data csv, a
  shipped sweep by name; no known noise in any of their output."""
  bin_dir = _isolated_venv(tmp_path, build_wheel(tmp_path))
  for script in SCRIPTS:
    assert os.access(os.path.join(bin_dir, script), os.X_OK), script
  away, data = tmp_path / 'elsewhere', tmp_path / 'tfds'
  away.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'TFDS_DATA_DIR')}
  env.update(PATH=bin_dir + os.pathsep + env['PATH'], TFDS_DATA_DIR=str(data))
  logs = []

  def run(*cmd):
    out = subprocess.run(cmd, cwd=away, env=env, capture_output=True, text=True, timeout=900)
    logs.append(out.stdout + out.stderr)
    assert out.returncode == 0, f'{cmd}: {out.stdout[-2000:]} {out.stderr[-3000:]}'
    return out

  python = os.path.join(bin_dir, 'python')
  where = run(python, '-c', 'import mmjax; print(mmjax.__file__)')
  assert where.stdout.startswith(str(tmp_path / 'venv')), where.stdout
  modules = run(python, '-c', IMPORT_EVERY_MODULE)
  assert 'no checkout tools' in modules.stdout, modules.stdout
  assert '--topology' in run('mmjax-aot', '--help').stdout
  # No linear probe (its pass over the training split is tested elsewhere): the run's config,
  # and so both evaluations below, score zero-shot and retrieval only.
  run('mmjax-train', '--config=demo', '--workdir=W', '--config.total_steps=6',
      '--config.model.num_layers=1', '--config.data.threads=1',
      '--config.evaluation.datasets.digits.linear_probe=False')
  assert (away / 'W' / 'checkpoints' / '6').is_dir()
  evaluate = run('mmjax-evaluate', '--workdir=W', '--save_features')
  assert 'zero shot' in evaluate.stdout, evaluate.stdout
  assert (away / 'W' / 'eval' / 'step_6.json').is_file()
  assert (away / 'W' / 'eval' / 'features' / 'digits_test.npz').is_file()
  run('mmjax-export', '--workdir=W', '--output=E', '--format=orbax,safetensors')
  shutil.copytree(away / 'E', tmp_path / 'copied_export')
  shutil.rmtree(away / 'E')
  before = sorted((str(p.relative_to(data)), p.stat().st_mtime_ns) for p in data.rglob('*'))
  run('mmjax-evaluate', f'--workdir={tmp_path}/copied_export', '--output=EE',
      f'--config.data_dir={data}')
  assert (away / 'EE' / 'step_6.json').is_file()
  assert sorted((str(p.relative_to(data)), p.stat().st_mtime_ns) for p in data.rglob('*')) == before
  (away / 'media').mkdir()
  png = subprocess.run([python, '-c', 'import cv2, numpy, sys; sys.stdout.buffer.write('
                        'cv2.imencode(".png", numpy.zeros((8, 8, 3), numpy.uint8))[1].tobytes())'],
                       capture_output=True, check=True, env=env).stdout
  (away / 'media' / 'a.png').write_bytes(png)
  (away / 'pairs.csv').write_text('path,caption\na.png,a black square\n')
  run(python, '-m', 'mmjax.tools.convert_data', 'csv', '--input=pairs.csv', '--image_root=media',
      '--output=converted', '--name=squares', '--workers=1', '--vocab_size=20')
  assert (away / 'converted' / 'squares').is_dir()
  sweep = run(python, '-m', 'mmjax.sweep', '--sweep=agd_vs_mixed', '--workdir=S',
              '--print_commands')
  assert 'agd/seed_0' in sweep.stdout and 'mixed/seed_0' in sweep.stdout, sweep.stdout
  for noise in NOISE:
    assert not any(noise in log for log in logs), noise


def test_evaluate_without_config_needs_a_run_config(tmp_path, capsys):
  assert evaluate_cli.main([f'--workdir={tmp_path}']) == 2
  err = capsys.readouterr().err.strip()
  # Neither a run (config.json, checkpoints/) nor an export: one sentence saying to train first.
  assert err.startswith('error: ') and 'train first' in err and '\n' not in err
  assert os.listdir(tmp_path) == []
