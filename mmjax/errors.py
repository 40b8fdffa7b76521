"""The two kinds of error a person reads, by meaning (ground floor: imports nothing of mmjax).

- `UserError`: the input is wrong (config, flags, mesh, data that is not there, a workdir in
  use). One sentence naming the problem and the fix; `mmjax.cli` exits 2, and launchers do not
  restart (the same input would fail again). Every stage's one-sentence error derives from it.
- `StorageError`: the storage failed during a run (permission, missing file, full disk, an I/O
  error) after retries where they make sense. One sentence naming the path and the errno, every
  good checkpoint left in place; `mmjax.cli` exits 1, and launchers restart (the run resumes).
"""

from __future__ import annotations

import errno as errno_lib
import os


class UserError(Exception):
  """Bad input from a person: one sentence naming the problem and the fix (exit code 2)."""


class StorageError(RuntimeError):
  """The storage failed during a run: one sentence naming path and errno (exit code 1)."""

  def __init__(self, message: str, path: str | None = None, errno: int | None = None):
    super().__init__(message)
    self.path, self.errno = path, errno


def errno_name(code: int | None) -> str:
  """'EACCES' for 13; '' when unknown."""
  return errno_lib.errorcode.get(code, '') if code else ''


def describe_os_error(error: BaseException, path: str | None = None) -> tuple[str, int | None]:
  """(path, errno) of an OSError (or of the first OSError in its causes), for one sentence."""
  seen, e = set(), error
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and (e.errno or e.filename):
      return str(path or e.filename or '?'), e.errno
    e = e.__cause__ or e.__context__
  return str(path or '?'), None


def storage_error(what: str, error: BaseException, path: str | None = None) -> StorageError:
  """A StorageError for `error` (an OSError, or an exception caused by one) while `what`:
  'storage fault while saving checkpoint 10: EACCES (Permission denied) on /x/y; ...'."""
  where, code = describe_os_error(error, path)
  name = errno_name(code)
  detail = f'{name} ({os.strerror(code)})' if code else type(error).__name__
  text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ''
  if not code and text:
    detail += f': {text}'
  return StorageError(f'storage fault while {what}: {detail} on {where}; every checkpoint '
                      'written before it is kept, so fix the storage and run the same command '
                      'again (it resumes).', path=where, errno=code)
