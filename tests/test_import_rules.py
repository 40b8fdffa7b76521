"""The library's folders follow the data's journey: no module imports a later stage.

Every `mmjax/**/*.py` is parsed (`ast`), and every import in it, at module level and inside
functions, is checked against the table below. A function-local import is allowed only for an
optional heavy third-party dependency, with a comment saying so; a function-local import of
mmjax itself would be dodging a cycle.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Stage of a module -> the stages it may import. Entry points (cli, demo, `__main__`) compose
# the stages and sit above them all.
GROUND = ('ground',)
ALLOWED = {
    'ground': GROUND,
    'kernels': GROUND + ('kernels',),
    'data': GROUND + ('data',),
    'models': GROUND + ('kernels', 'models'),
    'train': GROUND + ('kernels', 'data', 'models', 'train'),
    'evaluate': GROUND + ('kernels', 'data', 'models', 'train', 'evaluate'),
    'export': GROUND + ('kernels', 'data', 'models', 'train', 'evaluate', 'export'),
    'plan': GROUND + ('kernels', 'data', 'models', 'train', 'plan'),
    # Offline data preparation that runs a model (dataset reinforcement with a teacher).
    'prepare': GROUND + ('kernels', 'data', 'models', 'prepare'),
    'entry': ('ground', 'kernels', 'data', 'models', 'train', 'evaluate', 'export', 'plan',
              'prepare', 'entry'),
}
STAGES = ('kernels', 'data', 'models', 'train', 'evaluate', 'export', 'plan', 'prepare')
# Optional or heavy third-party packages a function may import lazily (with a comment).
LAZY_OK = ('threadpoolctl', 'sklearn', 'array_record', 'tensorboardX', 'matplotlib', 'libtpu',
           'google')  # google: the GCS client, for gs:// workdirs only


def stage(module: str) -> str | None:
  """'mmjax.models.moe.layer' -> 'models'; None for a module outside mmjax."""
  parts = module.split('.')
  if parts[0] != 'mmjax':
    return None
  if parts[-1] == '__main__' or module in ('mmjax.cli', 'mmjax.demo') or parts[1:2] == ['sweep']:
    return 'entry'   # the sweep runner drives whole runs, like the entry points
  if len(parts) > 1 and parts[1] in STAGES:
    return parts[1]
  return 'ground'    # mmjax/__init__, config*, core/, and the small top-level helpers


def module_name(path: str, root: str) -> str:
  rel = os.path.relpath(path, root)[:-3].replace(os.sep, '.')
  return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def _is_module(root: str, dotted: str) -> bool:
  path = os.path.join(root, *dotted.split('.'))
  return os.path.isfile(path + '.py') or os.path.isdir(path)


def imports(path: str, root: str):
  """-> [(imported module, line, function-local?, has a comment)] of one file."""
  with open(path) as f:
    source = f.read()
  lines = source.splitlines()
  tree = ast.parse(source)
  local = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
           for n in ast.walk(fn)}
  package = module_name(path, root).split('.')
  if not path.endswith('__init__.py'):
    package = package[:-1]
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        base = '.'.join(package[:len(package) - node.level + 1] + ([base] if base else []))
      # `from mmjax.train import loop` imports mmjax.train.loop: check the submodule too.
      names = [f'{base}.{a.name}' if _is_module(root, f'{base}.{a.name}') else base
               for a in node.names]
    else:
      continue
    near = lines[max(0, node.lineno - 3):node.end_lineno]
    commented = any('#' in line for line in near)
    out += [(name, node.lineno, id(node) in local, commented) for name in names]
  return out


def violations(root: str = ROOT) -> list[str]:
  found = []
  for folder, _, files in os.walk(os.path.join(root, 'mmjax')):
    for name in sorted(files):
      if not name.endswith('.py'):
        continue
      path = os.path.join(folder, name)
      mod, rel = module_name(path, root), os.path.relpath(path, root)
      for target, line, is_local, commented in imports(path, root):
        where = f'{rel}:{line} imports {target}'
        top = target.split('.')[0]
        if top == 'tools':
          found.append(f'{where}: the library never imports tools/')
        elif top == 'mmjax':
          if is_local:
            found.append(f'{where} inside a function: import it at module level (a local '
                         'import of mmjax dodges a cycle)')
          if stage(target) not in ALLOWED[stage(mod)]:
            found.append(f'{where}: {stage(mod)} may not import {stage(target)}')
        elif is_local and (top not in LAZY_OK or not commented):
          found.append(f'{where} inside a function: only optional heavy dependencies '
                       f'({", ".join(LAZY_OK)}) may be imported lazily, with a comment saying so')
  return found


def test_no_back_edges():
  found = violations()
  assert not found, 'import rules broken:\n  ' + '\n  '.join(found)


def test_the_checker_sees_a_back_edge(tmp_path):
  """A model importing train, at module level or in a function, is reported."""
  pkg = tmp_path / 'mmjax' / 'models'
  pkg.mkdir(parents=True)
  (tmp_path / 'mmjax' / '__init__.py').write_text('')
  (pkg / '__init__.py').write_text('')
  (pkg / 'bad.py').write_text('from mmjax.train import step\n\n'
                              'def f():\n  from mmjax.evaluate import runner\n  return runner\n')
  found = violations(str(tmp_path))
  assert any('mmjax/models/bad.py:1 imports mmjax.train' in f and 'models may not import train'
             in f for f in found), found
  assert any(':4 imports mmjax.evaluate' in f and 'inside a function' in f for f in found), found


def test_cli_imports_no_stage():
  """`mmjax/cli.py` maps exit codes by the ground floor's error kinds, not by stage classes."""
  targets = [t for t, *_ in imports(os.path.join(ROOT, 'mmjax', 'cli.py'), ROOT)]
  assert [t for t in targets if t.startswith('mmjax') and stage(t) != 'ground'] == [], targets


@pytest.mark.parametrize('module,expected', [
    ('mmjax.core.tasks', 'ground'), ('mmjax.config', 'ground'), ('mmjax.models.moe.layer', 'models'),
    ('mmjax.train.__main__', 'entry'), ('mmjax.cli', 'entry'), ('numpy', None)])
def test_stage_of_a_module(module, expected):
  assert stage(module) == expected
