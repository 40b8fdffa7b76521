"""The modality table (core/modalities.py) is the one list of modalities: every consumer's view
of them comes from it, and each record's registered code resolves."""

import dataclasses

import jax.numpy as jnp
import pytest

from mmjax.config import defaults
from mmjax.core import modalities
from mmjax.core.tasks import MODALITIES, Resolution, Task


def test_records_resolve_and_are_consistent():
  names = modalities.names()
  assert names[:4] == ('image', 'video', 'audio', 'point_cloud') and names[-1] == 'text'
  assert {'point_cloud', 'time_series'} <= set(names) and MODALITIES == names
  arrays = [a.name for m in modalities.all_records() for a in m.arrays]
  assert len(arrays) == len(set(arrays))                     # one owner per batch array
  for m in modalities.all_records():
    assert m.input.name == m.name
    assert callable(modalities.load(m.embedding)) and callable(modalities.load(m.transform))
    if m.patch_target:
      target = modalities.load(m.patch_target)
      assert callable(target.targets) and callable(target.patch_dim)
    for a in m.arrays:   # every symbolic dimension is one of the modality's resolution fields
      assert all(isinstance(d, int) or d in m.fields for d in a.shape)
  assert [f.name for f in dataclasses.fields(Resolution)] == [
      f for f, _ in modalities.resolution_fields()]
  assert [f.name for f in dataclasses.fields(Resolution)][:4] == [
      'image_size', 'num_frames', 'audio_samples', 'text_length']


def test_config_defaults_come_from_the_table():
  model, task, entry = defaults.model_config(), defaults.task('d', 'image', 1), \
      defaults.eval_dataset('d', 'image')
  for key, value in modalities.model_keys():
    assert model[key] == value
  for m in modalities.all_records():
    assert m.name in model.towers
    for key, value in m.options:
      assert model[m.name][key] == value
  for field, _ in modalities.resolution_fields():
    assert field in task and field in entry


def test_batch_spec_of_the_old_modalities_is_unchanged():
  from mmjax.train.step import batch_spec
  res = Resolution(image_size=32, num_frames=8, audio_samples=4096, text_length=16)
  task = Task('t', 'd', 'train', ('image', 'video', 'audio', 'text'), 2, (res,))
  spec = batch_spec(task)
  assert spec == {'image': ((2, 32, 32, 3), jnp.uint8), 'video': ((2, 8, 32, 32, 3), jnp.uint8),
                  'audio': ((2, 4096), jnp.int16), 'text': ((2, 16), jnp.int32),
                  'text_mask': ((2, 16), jnp.int32)}
  assert res.describe() == 'image_size=32,num_frames=8,audio_samples=4096,text_length=16'


def test_register_refuses_duplicates_and_conflicting_defaults():
  image = modalities.get('image')
  with pytest.raises(ValueError, match='twice'):
    modalities.register(image)
  with pytest.raises(ValueError, match='image_size'):
    modalities.register(dataclasses.replace(image, name='other', resolution=(('image_size', 9),)))
  assert 'other' not in modalities.names()
  with pytest.raises(ValueError, match="unknown modality 'radar'"):
    modalities.get('radar')
