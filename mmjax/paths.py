"""The one path layer for run directories: local paths and object stores (`gs://`, `s3://`).

Everything the training run writes into its workdir (config, metrics, plots, checkpoint
housekeeping, the compilation cache) goes through these functions, backed by etils `epath`
(the library orbax and TFDS use), so `--workdir=gs://bucket/run` works wherever credentials
exist. Object stores publish an object whole when it is closed and cannot append: a write is
atomic there by itself, and an append rewrites the object.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from etils import epath


def is_remote(path) -> bool:
  """True for object-store URLs such as gs://bucket/x or s3://bucket/x."""
  return '://' in str(path)


def resolve(path) -> str:
  """An absolute local path, or the URL unchanged."""
  return str(path) if is_remote(path) else os.path.abspath(str(path))


def join(base, *parts: str) -> str:
  return str(epath.Path(base).joinpath(*parts)) if is_remote(base) else os.path.join(base, *parts)


def exists(path) -> bool:
  return epath.Path(path).exists()


def listdir(path) -> list[str]:
  """Names of the entries of directory `path`, sorted."""
  return sorted(p.name for p in epath.Path(path).iterdir())


def walk_files(path) -> list[str]:
  """Paths (relative to directory `path`, '/'-separated, sorted) of every file below it."""
  if not is_remote(path):
    out = []
    for root, _, files in os.walk(path):
      rel = os.path.relpath(root, path)
      out += [f if rel == '.' else f'{rel}/{f}'.replace(os.sep, '/') for f in files]
    return sorted(out)
  base = epath.Path(path)
  prefix = str(base).split('://', 1)[1].rstrip('/')  # fsspec names roots without the scheme
  out = []
  for root, _, files in base.walk():
    root = str(root).split('://', 1)[-1]
    rel = root[len(prefix):].strip('/')
    out += [f'{rel}/{f}' if rel else f for f in files]
  return sorted(out)


def makedirs(path) -> None:
  epath.Path(path).mkdir(parents=True, exist_ok=True)


def read_text(path) -> str:
  return epath.Path(path).read_text()


def write_text(path, text: str) -> None:
  """Replaces `path` with `text` atomically (readers see the old or the new file, whole)."""
  if is_remote(path):
    epath.Path(path).write_text(text)
    return
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def append_text(path, text: str) -> None:
  """Appends `text` to `path` (created if missing); on object stores, rewrites the object."""
  if not is_remote(path):
    with open(path, 'a') as f:
      f.write(text)
    return
  p = epath.Path(path)
  p.write_text((p.read_text() if p.exists() else '') + text)


def rename(src, dst) -> None:
  epath.Path(src).rename(dst)


def open_file(path, mode: str = 'r'):
  """A file object for `path` (e.g. for `Figure.savefig(open_file(p, 'wb'))`)."""
  return epath.Path(path).open(mode)


@contextlib.contextmanager
def file_lock(path: str):
  """Exclusive inter-process lock on the local file `path` (created if absent; blocks until
  free): one builder of a shared dataset or tokenizer at a time."""
  with open(path, 'a+') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
