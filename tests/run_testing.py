"""Running the real training command in subprocesses for tests: a tiny two-task config, argv,
environment, a shared compile cache, start/kill/wait, and reading back metrics and checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orbax.checkpoint as ocp

from mmjax_testing import xla_flags

ROOT = Path(__file__).resolve().parents[1]

TINY_CONFIG = '''"""Two tasks (AGD picks between them), one layer: `python -m mmjax.train --config=THIS`."""
from mmjax.config.defaults import base_config, task


def get_config(arg=None):
  c = base_config()
  c.total_steps = 40
  c.log_every = 1
  c.checkpoint_every = 20
  c.model.num_layers = 1
  c.model.embed_dim = 32
  c.model.patch_size = 8
  c.model.max_grid = 4
  c.model.max_text_length = 16
  c.model.vocab_size = 512
  c.optimizer.warmup_steps = 5
  c.optimizer.decay_steps = 40
  c.data.threads = 1
  c.faults.inject_nan_at_steps = ()
  sizes = dict(image_size=32, text_length=8)
  c.tasks.image_text = task('mmjax_digits', 'image,text', 16, contrast='image-text', **sizes)
  c.tasks.image_classify = task('mmjax_digits', 'image', 16, classify='image', num_classes=10,
                                weight=0.5, **sizes)
  return c
'''


# --- helpers shared with test_faults.py and test_multiprocess.py --------------------------------

def write_config(directory: Path) -> str:
  path = Path(directory) / 'tiny_config.py'
  path.write_text(TINY_CONFIG)
  return str(path)


def subprocess_env(**extra: str) -> dict:
  """8 CPU devices; the compilation cache key made independent of the cache's path (JAX puts
  the GPU autotune cache directory, under the cache directory, into the compile options)."""
  path = os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH', '')) if p)
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONUNBUFFERED='1', PYTHONPATH=path,
             XLA_FLAGS=xla_flags(8),
             JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES='none')
  env.update(extra)
  return env


def train_argv(config: str, workdir: Path, *overrides: str) -> list[str]:
  return [sys.executable, '-m', 'mmjax.train', f'--config={config}', f'--workdir={workdir}',
          *overrides]


class CompileCache:
  """Copies cached executables into a workdir's `jax_cache` before a run and back after it."""

  def __init__(self, directory: Path):
    self.directory = Path(directory)
    self.directory.mkdir(parents=True, exist_ok=True)

  @staticmethod
  def _copy_new(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob('*-cache'):
      if not (dst / f.name).exists():
        shutil.copy2(f, dst / f.name)

  def seed(self, workdir: Path) -> None:
    self._copy_new(self.directory, Path(workdir) / 'jax_cache')

  def keep(self, workdir: Path) -> None:
    if (Path(workdir) / 'jax_cache').is_dir():
      self._copy_new(Path(workdir) / 'jax_cache', self.directory)


def make_compile_cache(request, tmp_path_factory) -> CompileCache:
  cache = getattr(request.config, 'cache', None)
  where = cache.mkdir('mmjax-compilation') if cache else tmp_path_factory.mktemp('compilation')
  return CompileCache(where)


def start(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
  """Starts `argv` in the repository root with stdout and stderr going to `log`."""
  with open(log, 'ab') as f:
    return subprocess.Popen(argv, cwd=ROOT, env=env or subprocess_env(), stdout=f,
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
  """SIGKILLs `proc` and everything it started (its own session, see `start`)."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  proc.wait()


def run(argv: list[str], log: Path, env: dict | None = None, timeout: float = 400
        ) -> tuple[int, str]:
  """Runs `argv` to the end; returns (exit code, its output)."""
  offset = log.stat().st_size if log.exists() else 0
  proc = start(argv, log, env)
  try:
    code = proc.wait(timeout=timeout)
  finally:
    if proc.poll() is None:
      kill_group(proc)
  return code, log.read_bytes()[offset:].decode(errors='replace')


def rows(workdir: Path) -> dict[int, dict]:
  """metrics.jsonl's training rows as {step: row}, each step's last row (a resumed run appends
  the steps it redoes)."""
  path = Path(workdir) / 'metrics.jsonl'
  out = {}
  if not path.exists():
    return out
  for line in path.read_text().splitlines():
    if line.strip():
      row = json.loads(line)
      if 'loss' in row:
        out[row['step']] = row
  return out


def committed(workdir: Path, step: int) -> bool:
  """Orbax renames `<step>.orbax-checkpoint-tmp-*` to `<step>` once every item is written."""
  return (Path(workdir) / 'checkpoints' / str(step) / '_CHECKPOINT_METADATA').exists()


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300, what: str = '') -> None:
  deadline = time.monotonic() + timeout
  while not predicate():
    if proc.poll() is not None:
      raise AssertionError(f'the run ended (exit {proc.returncode}) before {what}')
    if time.monotonic() > deadline:
      kill_group(proc)
      raise AssertionError(f'timed out waiting for {what}')
    time.sleep(0.05)


def same_losses(a: dict, b: dict, steps) -> None:
  """Task choice and loss of each step bit-identical (float32 losses, JSON round trip)."""
  for s in steps:
    assert (a[s]['task'], a[s]['loss'], a[s]['grad_norm']) == \
        (b[s]['task'], b[s]['loss'], b[s]['grad_norm']), f'step {s} differs'


def steps_on_disk(workdir: Path) -> list[str]:
  return sorted(p.name for p in (Path(workdir) / 'checkpoints').iterdir())


# --- fixtures -----------------------------------------------------------------------------------


def tree_digest(root: Path) -> dict[str, str]:
  """{relative path: sha256} of every file under `root` (directories by their listing)."""
  out = {}
  for p in sorted(Path(root).rglob('*')):
    rel = str(p.relative_to(root))
    out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else 'dir'
  return out


def failing_restore(monkeypatch, failures: int):
  """orbax's restore raises OSError on its first `failures` calls, then works; returns calls."""
  calls = []
  real = ocp.CheckpointManager.restore

  def restore(self, *args, **kwargs):
    calls.append(args[0] if args else kwargs.get('step'))
    if len(calls) <= failures:
      raise OSError(5, 'Input/output error (injected)')
    return real(self, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, 'restore', restore)
  return calls
