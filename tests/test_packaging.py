"""The installable package: the wheel's contents, configs by name, and the console scripts of a
wheel installed in a fresh venv, run from outside the checkout (built offline, no downloads)."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata

import pytest

from mmjax import config as config_lib
from mmjax import config_paths
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


def _venv_with_wheel(tmp_path, wheel: str) -> str:
  """A fresh venv holding only the wheel; the pinned dependencies are seen through a .pth file
  listing this interpreter's package folders (none of which holds mmjax itself)."""
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
  python = str(venv / 'bin' / 'python')
  site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                        check=True, capture_output=True, text=True).stdout.strip()
  here = sysconfig.get_paths()['stdlib']
  deps = [p for p in sys.path if os.path.isdir(p) and not p.startswith(here)
          and not os.path.isdir(os.path.join(p, 'mmjax')) and p != ROOT]
  with open(os.path.join(site, 'zz_deps.pth'), 'w') as f:
    f.write('\n'.join(deps) + '\n')
  subprocess.run([sys.executable, '-m', 'pip', '--python', python, 'install', '-q', '--no-deps',
                  '--no-index', wheel], check=True)
  return str(venv / 'bin')


@pytest.mark.slow
def test_installed_console_scripts_train_and_evaluate_outside_the_checkout(tmp_path):
  bin_dir = _venv_with_wheel(tmp_path, build_wheel(tmp_path))
  for script in SCRIPTS:
    assert os.access(os.path.join(bin_dir, script), os.X_OK), script
  away = tmp_path / 'elsewhere'
  away.mkdir()
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['PATH'] = bin_dir + os.pathsep + env['PATH']

  def run(*cmd):
    return subprocess.run(cmd, cwd=away, env=env, capture_output=True, text=True, timeout=900)

  where = run(os.path.join(bin_dir, 'python'), '-c', 'import mmjax; print(mmjax.__file__)')
  assert where.stdout.startswith(str(tmp_path / 'venv')), where.stdout + where.stderr
  aot = run('mmjax-aot', '--help')
  assert aot.returncode == 0 and '--topology' in aot.stdout, aot.stderr
  train = run('mmjax-train', '--config=demo', '--workdir=W', '--config.total_steps=6',
              '--config.model.num_layers=1', '--config.data.threads=1')
  assert train.returncode == 0, train.stderr[-3000:]
  assert (away / 'W' / 'checkpoints' / '6').is_dir()
  evaluate = run('mmjax-evaluate', '--workdir=W')
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  assert (away / 'W' / 'eval' / 'step_6.json').is_file()
  assert 'zero' in evaluate.stdout.lower() or 'top1' in evaluate.stdout.lower(), evaluate.stdout


def test_evaluate_without_config_needs_a_run_config(tmp_path, capsys):
  assert evaluate_cli.main([f'--workdir={tmp_path}']) == 2
  err = capsys.readouterr().err.strip()
  # Neither a run (config.json, checkpoints/) nor an export: one sentence saying to train first.
  assert err.startswith('error: ') and 'train first' in err and '\n' not in err
  assert os.listdir(tmp_path) == []
