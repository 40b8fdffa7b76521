"""Checkpoint damage is judged the same way on local disks and on `gs://` (the GCS emulator):
digests recorded at save, a flipped byte or a deleted object sets the newest step aside and the
one before is restored. Small pytrees, no model."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from mmjax import paths
from mmjax.core import checkpoint_damage, checkpointing
from gcs_testing import gcs  # noqa: F401 - the emulator fixture


def _tree(step: int) -> dict:
  return {'params': {'w': np.arange(4096, dtype=np.float32) + step,
                     'b': np.full((8,), step, np.float32)},
          'step': np.asarray(step, np.int32)}


def _abstract(tree):
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype,
                                                     sharding=sharding), tree)


def _save(workdir: str, steps=(1, 2)) -> None:
  ckpt = checkpointing.Checkpointer(workdir, async_save=False)
  try:
    for s in steps:
      ckpt.save(s, jax.tree.map(jax.numpy.asarray, _tree(s)), {'agd_step': s})
  finally:
    ckpt.close()


def _largest_file(step_dir: str) -> str:
  state = paths.join(step_dir, 'state')
  files = [f for f in paths.walk_files(state) if f != checkpoint_damage.DIGESTS]
  sizes = {f: len(paths.open_file(paths.join(state, f), 'rb').read()) for f in files}
  return paths.join(state, max(sizes, key=sizes.get))


def _flip(path: str, n: int = 64) -> None:
  data = bytearray(paths.open_file(path, 'rb').read())
  mid = len(data) // 2
  data[mid:mid + n] = bytes(b ^ 0xFF for b in data[mid:mid + n])
  with paths.open_file(path, 'wb') as f:
    f.write(bytes(data))


def _restore(workdir: str):
  ckpt = checkpointing.Checkpointer(workdir)
  try:
    return ckpt.restore_latest_good(_abstract(_tree(0)))
  finally:
    ckpt.close()


def test_digests_are_recorded_before_the_commit_and_a_flipped_file_is_set_aside(tmp_path):
  workdir = str(tmp_path / 'run')
  _save(workdir)
  step_dir = paths.join(workdir, 'checkpoints', '2')
  recorded = json.loads(paths.read_text(paths.join(step_dir, 'state', checkpoint_damage.DIGESTS)))
  files = recorded['files']
  assert 'manifest.ocdbt' in files and '_METADATA' in files and len(files) >= 3
  # Independent expectation: hashlib over the same bytes.
  import hashlib
  largest = _largest_file(step_dir)
  rel = largest[len(paths.join(step_dir, 'state')) + 1:]
  assert files[rel] == hashlib.sha256(paths.open_file(largest, 'rb').read()).hexdigest()
  assert checkpoint_damage.verified_damage(step_dir) is None

  size = len(paths.open_file(largest, 'rb').read())
  _flip(largest)
  assert len(paths.open_file(largest, 'rb').read()) == size          # same size, other bytes
  assert 'does not match the SHA-256 digest' in checkpoint_damage.quick_damage(step_dir)
  step, state, data = _restore(workdir)
  assert step == 1 and data == {'agd_step': 1}
  np.testing.assert_array_equal(np.asarray(state['params']['w']), _tree(1)['params']['w'])
  assert paths.listdir(paths.join(workdir, 'checkpoints')) == ['1', '2.corrupt']


def test_on_gcs_a_deleted_object_falls_back_to_the_step_before(tmp_path, gcs):  # noqa: F811
  workdir = f'gs://bucket/integrity/{tmp_path.name}-deleted'
  _save(workdir)
  from etils import epath
  newest = paths.join(workdir, 'checkpoints', '2')
  epath.Path(_largest_file(newest)).unlink()
  assert 'is missing' in checkpoint_damage.quick_damage(newest)
  step, _, data = _restore(workdir)
  assert step == 1 and data['agd_step'] == 1
  assert paths.listdir(paths.join(workdir, 'checkpoints')) == ['1', '2.corrupt']


def test_remote_array_read_back_finds_a_deleted_object_without_digests(tmp_path, gcs):  # noqa: F811
  """A checkpoint written before digests existed: the TensorStore read-back judges it."""
  workdir = f'gs://bucket/integrity/{tmp_path.name}-old'
  _save(workdir, steps=(1,))
  step_dir = paths.join(workdir, 'checkpoints', '1')
  from etils import epath
  epath.Path(paths.join(step_dir, 'state', checkpoint_damage.DIGESTS)).unlink()
  assert checkpoint_damage.verified_damage(step_dir) is None
  epath.Path(_largest_file(step_dir)).unlink()
  assert checkpoint_damage.quick_damage(step_dir) is None
  assert 'cannot be read back' in checkpoint_damage.array_damage(step_dir)
