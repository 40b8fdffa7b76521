"""Before a 4M run builds its model: every image/audio modality of a `fourm` task needs a frozen
tokenizer. A config that names none (`config.model.fourm.tokenizers.<m>=''`) gets one trained
with `config.model.fourm.tokenizer_*` on the task's dataset and input size, cached beside the
dataset and reused by later runs (`tokenizer_training.ensure_tokenizer`); the path is written
into the config, so the workdir's config.json names the tokenizer the run used.
"""

from __future__ import annotations

from mmjax.core.tasks import tasks_from_config
from mmjax.data.errors import DataError
from mmjax.models import discrete_tokenizer as dt
from mmjax.models import tokenizer_files
from mmjax.train import tokenizer_training
from mmjax.config.defaults import setting


def tokenizer_spec(config, task, modality: str) -> dict:
  fc, r = config.model.fourm, task.resolutions[0]
  return dt.make_spec(modality, levels=tuple(fc.tokenizer_levels),
                      channels=tuple(fc.tokenizer_channels), image_size=r.image_size or 0,
                      audio=config.model.audio, audio_samples=r.audio_samples or 0)


def prepare(config) -> list[str]:
  """Trains or finds each missing tokenizer and sets its path; checks the named ones against the
  task's input sizes. Returns the modalities it filled in."""
  filled = []
  for task in tasks_from_config(config):
    for m in task.fourm:
      if m == 'text':
        continue
      path = str(config.model.fourm.tokenizers.get(m, '') or '')
      if not path:
        spec = tokenizer_spec(config, task, m)
        path = tokenizer_training.ensure_tokenizer(task.dataset,
                                                   setting(config, 'data_dir') or None,
                                                   spec, int(config.model.fourm.tokenizer_steps))
        config.model.fourm.tokenizers[m] = path
        filled.append(m)
      try:
        spec = tokenizer_files.spec_of(path)
      except tokenizer_files.TokenizerFileError as e:
        raise DataError(str(e)) from None
      r = task.resolutions[0]
      size = spec.get('image_size') if m == 'image' else spec.get('audio_samples')
      want = r.image_size if m == 'image' else r.audio_samples
      if size != want:
        raise DataError(
            f'the {m} tokenizer {path} was trained on inputs of size {size}, task {task.name!r} '
            f'sends {want}: train one for that size or match the task\'s input size.')
  return filled
