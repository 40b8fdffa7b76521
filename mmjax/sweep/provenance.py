"""Where a sweep's numbers came from: the code's commit (and whether the tree had uncommitted
changes), the mmjax version, the command, and UTC times."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def now() -> str:
  """The current UTC time, ISO 8601 to the second."""
  return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _git(*args: str) -> str | None:
  try:
    out = subprocess.run(['git', '-C', ROOT, *args], capture_output=True, text=True, timeout=20)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def code_state() -> dict:
  """`{"commit", "dirty", "mmjax_version"}`; commit and dirty are None outside a git checkout.
  Dirty counts changes to tracked files only (run folders inside the checkout do not count)."""
  commit = _git('rev-parse', 'HEAD')
  status = _git('status', '--porcelain', '--untracked-files=no') if commit else None
  try:
    version = importlib.metadata.version('mmjax')
  except importlib.metadata.PackageNotFoundError:
    version = 'unknown (mmjax is not pip-installed)'
  return {'commit': commit, 'dirty': None if status is None else bool(status),
          'mmjax_version': version}


def command(argv: list[str] | None = None) -> str:
  """The command line as a shell would take it back (`python -m mmjax.sweep ...`)."""
  argv = sys.argv if argv is None else argv
  return ' '.join(shlex.quote(a) for a in ['python', '-m', 'mmjax.sweep', *argv[1:]])
