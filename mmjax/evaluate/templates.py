"""Prompt templates of the embedded `mmjax_digits` evaluation, one set per modality.

Standard benchmarks use the published prompt sets of `benchmarks/prompts.json` instead (CLIP's
80 ImageNet templates, its per-dataset sets, IMP/VATT-style video and audio sets; see
`registry.py`); a config entry names one with `templates.<modality>='<set name>'`.

Adapted from the CLIP / IMP prompt ensembles. They are deliberately different sentences from the
training captions (e.g. "a handwritten seven", "the digit seven written by hand"), so zero-shot
accuracy measures transfer to new phrasings rather than recall of the caption generator.
Each template holds exactly one `{}`, filled with a class name.
"""

from __future__ import annotations

from typing import Sequence

from mmjax.core import modalities

IMAGE = (
    'a photo of the number {}.',
    'a picture of a {}.',
    'an image of the digit {}.',
    'a close-up photo of a {}.',
    'a black and white photo of a {}.',
    'a low resolution photo of a {}.',
    'a blurry photo of a {}.',
    'a cropped photo of the {}.',
    'a bright photo of a {}.',
    'a dark photo of the {}.',
    'a scan of a {}.',
    'a drawing of a {}.',
    'a sketch of the number {}.',
    'a rendering of a {}.',
    'a good photo of the {}.',
    'a photo of my {}.',
)

VIDEO = (
    'a video of a handwritten {}.',
    'a video of the number {}.',
    'a clip showing a {}.',
    'a video of a {} moving.',
    'a short film of the digit {}.',
    'footage of a {}.',
    'a blurry video of a {}.',
    'a low resolution video of a {}.',
    'a black and white video of a {}.',
    'a close-up video of a {}.',
    'an animation of a {}.',
    'a recording of the {}.',
    'a shaky video of a {}.',
    'frames of a video of a {}.',
    'a video showing the number {}.',
    'a moving picture of a {}.',
)

AUDIO = (
    'the sound of a {}.',
    'a recording of someone saying {}.',
    'an audio clip of the word {}.',
    'a voice saying the number {}.',
    'the spoken word {}.',
    'a noisy recording of a {}.',
    'a quiet recording of a {}.',
    'a clear recording of the {}.',
    'a person pronouncing {}.',
    'an audio recording of a {}.',
    'a short sound of the {}.',
    'someone speaking the number {}.',
    'the audio of a {}.',
    'a muffled sound of a {}.',
    'a loud sound of a {}.',
    'you can hear a {}.',
)

TEMPLATES: dict[str, tuple[str, ...]] = {'image': IMAGE, 'video': VIDEO, 'audio': AUDIO}
# Modalities that bring their own prompt set in the modality table (core/modalities.py).
TEMPLATES.update({m.name: m.prompts for m in modalities.all_records()
                  if m.prompts and m.name not in TEMPLATES})


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
  """Returns the templates as a tuple; each must be a string with exactly one `{}`."""
  templates = tuple(templates)
  if not templates:
    raise ValueError('the template list is empty: give at least one template such as "a photo of a {}.".')
  for t in templates:
    if not isinstance(t, str) or t.count('{}') != 1:
      raise ValueError(f'template {t!r} must be a string with exactly one "{{}}" for the class name.')
  return templates


def get_templates(modality: str, override: str | Sequence[str] | None = None) -> tuple[str, ...]:
  """The templates of `modality`, or `override`: a modality name (its set) or a list of templates."""
  if override is None or (isinstance(override, str) and override in ('', 'default')):
    override = modality
  if isinstance(override, str):
    if override not in TEMPLATES:
      raise ValueError(f'unknown template set {override!r}: use one of {sorted(TEMPLATES)} '
                       'or a list of templates with one "{}" each.')
    return TEMPLATES[override]
  return check_templates(override)


def build_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
  """Prompts `[classes][templates]`: every class name in every template."""
  templates = check_templates(templates)
  return [[t.format(name) for t in templates] for name in class_names]
