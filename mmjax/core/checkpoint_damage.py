"""Verified damage of one checkpoint step, judged from its files alone (no orbax restore), on any
file system the path layer reaches (local disks and `gs://` alike).

A step is damaged when it has no commit marker, a metadata file is missing or not JSON, the
OCDBT manifest is missing, a file's bytes differ from the SHA-256 digest recorded when it was
saved (`state/mmjax_digests.json`, written before the commit; a file listed there is missing),
or an array listed in the metadata cannot be read back whole by TensorStore because a file is
truncated, missing or contradicts the array's metadata. Anything else that fails (an `OSError`,
a TensorStore error that is not about the data itself) is not damage: `DamageUnknown` is raised
and the caller keeps the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os

import tensorstore as ts

from mmjax import paths

COMMIT_METADATA = '_CHECKPOINT_METADATA'   # orbax: written, with a commit time, before the rename
COMMIT_SUCCESS = 'commit_success.txt'     # orbax: written by the commit on every file system
STATE_METADATA = 'state/_METADATA'
DATA_METADATA = 'data/metadata'
DIGESTS = 'mmjax_digests.json'            # in the state item: {relative path: sha256 hex}
# TensorStore status codes that describe the stored bytes, not the storage's health.
DATA_CODES = ('OUT_OF_RANGE', 'DATA_LOSS', 'NOT_FOUND', 'INVALID_ARGUMENT', 'FAILED_PRECONDITION')
_CHUNK = 4 << 20


class DamageUnknown(RuntimeError):
  """The files could not be judged (an I/O error while reading them): not verified damage."""


def _read(path: str) -> bytes | None:
  """The file's bytes; None when it does not exist; DamageUnknown on any other failure."""
  try:
    with paths.open_file(path, 'rb') as f:
      return f.read()
  except FileNotFoundError:
    return None
  except Exception as e:  # noqa: BLE001 - OSError locally, client errors on object stores
    raise DamageUnknown(f'{path}: {type(e).__name__}: {e}') from e


def _json(path: str):
  """The parsed file; None when it does not exist; 'unreadable' when it is not JSON."""
  text = _read(path)
  if text is None:
    return None
  try:
    return json.loads(text)
  except (ValueError, UnicodeDecodeError):
    return 'unreadable'


def _exists(path: str) -> bool:
  try:
    return paths.exists(path)
  except Exception as e:  # noqa: BLE001
    raise DamageUnknown(f'{path}: {type(e).__name__}: {e}') from e


def structural_damage(step_dir: str) -> str | None:
  """Why `step_dir` is damaged from its small files (commit marker, metadata), or None."""
  marker = _json(paths.join(step_dir, COMMIT_METADATA))
  committed = isinstance(marker, dict) and marker.get('commit_timestamp_nsecs')
  if not committed and not _exists(paths.join(step_dir, COMMIT_SUCCESS)):
    return f'no commit marker ({COMMIT_METADATA} with a commit time, or {COMMIT_SUCCESS})'
  values = {}
  for name in (STATE_METADATA, DATA_METADATA):
    values[name] = _json(paths.join(step_dir, name))
    if values[name] is None:
      return f'{name} is missing'
    if values[name] == 'unreadable':
      return f'{name} is not valid JSON'
  meta = values[STATE_METADATA]
  if (isinstance(meta, dict) and meta.get('use_ocdbt')
      and not _exists(paths.join(step_dir, 'state', 'manifest.ocdbt'))):
    return 'state/manifest.ocdbt is missing'
  return None


# --- digests ------------------------------------------------------------------------------------

def file_digest(path: str) -> str:
  """SHA-256 (hex) of the file's bytes, read in chunks through the path layer."""
  h = hashlib.sha256()
  with paths.open_file(path, 'rb') as f:
    while chunk := f.read(_CHUNK):
      h.update(chunk)
  return h.hexdigest()


def compute_digests(item_dir: str) -> dict[str, str]:
  """{path relative to `item_dir` ('/'-separated): sha256} of every file below it (the digest
  file itself excepted)."""
  return {rel: file_digest(paths.join(item_dir, rel))
          for rel in paths.walk_files(item_dir) if rel != DIGESTS}


def write_digests(item_dir: str) -> dict[str, str]:
  """Records the digests of `item_dir`'s files in `item_dir/mmjax_digests.json` (called by the
  checkpoint handler's finalize, before orbax writes the commit marker)."""
  digests = compute_digests(item_dir)
  paths.write_text(paths.join(item_dir, DIGESTS),
                   json.dumps({'algorithm': 'sha256', 'files': digests}, sort_keys=True))
  return digests


def digest_damage(step_dir: str) -> str | None:
  """The first file of `step_dir/state` whose bytes differ from its recorded digest or that is
  missing, or None (also when the checkpoint predates digests)."""
  state = paths.join(step_dir, 'state')
  recorded = _json(paths.join(state, DIGESTS))
  if recorded is None:
    return None
  if not isinstance(recorded, dict) or not isinstance(recorded.get('files'), dict):
    return f'state/{DIGESTS} is not valid JSON'
  for rel, expected in sorted(recorded['files'].items()):
    path = paths.join(state, *rel.split('/'))
    try:
      got = file_digest(path)
    except FileNotFoundError:
      return f'state/{rel} is missing (it is listed in state/{DIGESTS})'
    except Exception as e:  # noqa: BLE001
      raise DamageUnknown(f'{path}: {type(e).__name__}: {e}') from e
    if got != expected:
      return f'state/{rel} does not match the SHA-256 digest recorded when it was saved'
  return None


def quick_damage(step_dir: str) -> str | None:
  """Structural damage, else a digest mismatch (what is checked before every restore)."""
  return structural_damage(step_dir) or digest_damage(step_dir)


# --- read-back ----------------------------------------------------------------------------------

def _array_names(meta: dict) -> list[str]:
  """Names of the stored arrays (orbax joins the tree path with '.')."""
  names = []
  for key, value in (meta.get('tree_metadata') or {}).items():
    vm = value.get('value_metadata', {}) if isinstance(value, dict) else {}
    if vm.get('skip_deserialize') or vm.get('value_type') in (None, 'None'):
      continue
    parts = [k['key'] for k in value.get('key_metadata', [])]
    names.append('.'.join(parts) if parts else str(key))
  return names


def _url(path: str) -> str:
  """A TensorStore kvstore URL of directory `path` (file:// locally, gs://... as it is)."""
  return f'{path.rstrip("/")}/' if paths.is_remote(path) else f'file://{os.path.abspath(path)}/'


def array_damage(step_dir: str) -> str | None:
  """Reads every array of `step_dir/state` with TensorStore; the first one whose bytes are bad,
  or None. Raises DamageUnknown on errors that are not about the stored data."""
  state = paths.join(step_dir, 'state')
  meta = _json(paths.join(step_dir, STATE_METADATA))
  if not isinstance(meta, dict):
    return f'{STATE_METADATA} is missing or not valid JSON'
  driver = 'zarr3' if meta.get('use_zarr3') else 'zarr'
  for name in _array_names(meta):
    if meta.get('use_ocdbt', True):
      kvstore = {'driver': 'ocdbt', 'base': _url(state), 'path': name}
    else:
      kvstore = _url(paths.join(state, name))
    try:
      ts.open({'driver': driver, 'kvstore': kvstore}, open=True).result().read().result()
    except ValueError as e:  # TensorStore reports failures as ValueError('CODE: ...')
      text = str(e).strip()
      if text.startswith(DATA_CODES):
        return f'array {name!r} cannot be read back: {text.splitlines()[0][:200]}'
      raise DamageUnknown(f'array {name!r}: {text[:200]}') from e
    except OSError as e:
      raise DamageUnknown(f'array {name!r}: {e}') from e
  return None


def verified_damage(step_dir: str) -> str | None:
  """Structural damage, else a digest mismatch, else array damage, else None (DamageUnknown
  when it cannot tell)."""
  return quick_damage(step_dir) or array_damage(step_dir)
