"""Verified damage of one checkpoint step, judged from its files alone (no orbax restore).

A step is damaged when it has no commit marker, a metadata file is missing or not JSON, the
OCDBT manifest is missing, or an array listed in the metadata cannot be read back whole by
TensorStore because a file is truncated, missing or contradicts the array's metadata. Anything
else that fails (an `OSError`, a TensorStore error that is not about the data itself) is not
damage: `DamageUnknown` is raised and the caller keeps the checkpoint.
"""

from __future__ import annotations

import json
import os

import tensorstore as ts

COMMIT_METADATA = '_CHECKPOINT_METADATA'   # orbax: written, with a commit time, before the rename
COMMIT_SUCCESS = 'commit_success.txt'     # orbax: written by the commit on every file system
STATE_METADATA = os.path.join('state', '_METADATA')
DATA_METADATA = os.path.join('data', 'metadata')
# TensorStore status codes that describe the stored bytes, not the storage's health.
DATA_CODES = ('OUT_OF_RANGE', 'DATA_LOSS', 'NOT_FOUND', 'INVALID_ARGUMENT', 'FAILED_PRECONDITION')


class DamageUnknown(RuntimeError):
  """The files could not be judged (an I/O error while reading them): not verified damage."""


def _json(path: str):
  """The parsed file; None when it does not exist; 'unreadable' when it is not JSON."""
  try:
    with open(path, 'rb') as f:
      text = f.read()
  except FileNotFoundError:
    return None
  except OSError as e:
    raise DamageUnknown(f'{path}: {e}') from e
  try:
    return json.loads(text)
  except (ValueError, UnicodeDecodeError):
    return 'unreadable'


def structural_damage(step_dir: str) -> str | None:
  """Why `step_dir` is damaged from its small files (commit marker, metadata), or None."""
  marker = _json(os.path.join(step_dir, COMMIT_METADATA))
  committed = isinstance(marker, dict) and marker.get('commit_timestamp_nsecs')
  if not committed and not os.path.exists(os.path.join(step_dir, COMMIT_SUCCESS)):
    return f'no commit marker ({COMMIT_METADATA} with a commit time, or {COMMIT_SUCCESS})'
  for name in (STATE_METADATA, DATA_METADATA):
    value = _json(os.path.join(step_dir, name))
    if value is None:
      return f'{name} is missing'
    if value == 'unreadable':
      return f'{name} is not valid JSON'
  meta = _json(os.path.join(step_dir, STATE_METADATA))
  if meta.get('use_ocdbt') and not os.path.exists(os.path.join(step_dir, 'state',
                                                               'manifest.ocdbt')):
    return 'state/manifest.ocdbt is missing'
  return None


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


def array_damage(step_dir: str) -> str | None:
  """Reads every array of `step_dir/state` with TensorStore; the first one whose bytes are bad,
  or None. Raises DamageUnknown on errors that are not about the stored data."""
  state = os.path.join(os.path.abspath(step_dir), 'state')
  meta = _json(os.path.join(step_dir, STATE_METADATA))
  if not isinstance(meta, dict):
    return f'{STATE_METADATA} is missing or not valid JSON'
  driver = 'zarr3' if meta.get('use_zarr3') else 'zarr'
  for name in _array_names(meta):
    if meta.get('use_ocdbt', True):
      kvstore = {'driver': 'ocdbt', 'base': f'file://{state}/', 'path': name}
    else:
      kvstore = {'driver': 'file', 'path': os.path.join(state, name)}
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
  """Structural damage, else array damage, else None (DamageUnknown when it cannot tell)."""
  return structural_damage(step_dir) or array_damage(step_dir)
