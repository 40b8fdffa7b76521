"""Writing an export atomically: checks before anything is touched, a sibling temp directory,
and a rename at the end, so a failed or refused export leaves any existing one intact."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from mmjax.core.exports import layout
from mmjax.export.errors import ExportError


def check_output(output: str, overwrite: bool, *, is_ours=layout.is_export,
                 kind: str = 'mmjax') -> None:
  """Refuses an output that holds anything but an export of this `kind` (`is_ours(output)`), or
  one without `overwrite`."""
  if not os.path.exists(output):
    return
  if not os.path.isdir(output):
    raise ExportError(f'--output {output} is a file, not a directory: choose a directory path.')
  if not os.listdir(output):
    return
  if not is_ours(output):
    raise ExportError(f'--output {output} is not empty and holds no {kind} export: choose a new '
                      'or empty directory (an export never replaces other files).')
  if not overwrite:
    named = '' if kind == 'mmjax' else f' ({kind})'
    raise ExportError(f'--output {output} already holds an export{named}: pass --overwrite to '
                      'replace it, or choose another --output.')


@contextlib.contextmanager
def staged(output: str):
  """Yields a temp directory beside `output`; it is removed if the block raises."""
  output = os.path.abspath(output)
  parent = os.path.dirname(output)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(output)}.tmp-', dir=parent)
  umask = os.umask(0o022)
  os.umask(umask)
  os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def commit(tmp: str, output: str) -> None:
  """Moves the finished export `tmp` to `output`, replacing what `check_output` allowed."""
  output = os.path.abspath(output)
  old = None
  if os.path.exists(output):
    old = tempfile.mkdtemp(prefix=f'.{os.path.basename(output)}.old-', dir=os.path.dirname(output))
    os.rmdir(old)
    os.rename(output, old)
  os.rename(tmp, output)
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def reject(tmp: str, output: str) -> str:
  """Keeps a finished export whose parity failed at `<output>.rejected` (for inspection)."""
  target = os.path.abspath(output) + '.rejected'
  shutil.rmtree(target, ignore_errors=True)
  os.rename(tmp, target)
  return target
