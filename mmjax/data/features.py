"""Which dataset feature feeds which mmjax modality, checked before any example is read.

A task's `feature_map` holds `(dataset feature, target)` pairs, target one of image, video,
audio, text, label; nested features are written `a/b`. A modality not mapped explicitly takes the
feature of its own name, then (text) `caption`/`captions`/`captions/text` (COCO), then (label) `label`, then the only
feature of the right kind. A task with several text instances (MIL-NCE) takes text from a feature
holding several captions per example (shape `[None]`), preferring one over a single caption.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from mmjax.core import modalities as modalities_lib
from mmjax.core.tasks import MODALITIES
from mmjax.data.errors import DataError
from mmjax.data.readers import FeatureSpec

TARGETS = MODALITIES + ('label',)
KINDS = {m.name: m.feature_kinds for m in modalities_lib.all_records()} | {
    'label': ('label', 'int')}
ALIASES = {'text': ('text', 'caption', 'captions', 'captions/text'), 'label': ('label',)}


def _listing(features: dict[str, FeatureSpec]) -> str:
  return ', '.join(spec.describe() for spec in features.values()) or 'none'


def is_multi_text(spec: FeatureSpec) -> bool:
  """Whether a text feature holds several captions per example (a list, shape `[None]`)."""
  return spec.kind == 'text' and len(spec.shape) > 0


def _default(target: str, features: dict[str, FeatureSpec], multi: bool = False) -> str | None:
  names = ALIASES.get(target, (target,))
  if multi:  # several captions wanted: a list feature first, in alias order
    names = sorted(names, key=lambda n: not (n in features and is_multi_text(features[n])))
  for name in names:
    if name in features and features[name].kind in KINDS[target]:
      return name
  of_kind = [n for n, s in features.items() if s.kind in KINDS[target]]
  return of_kind[0] if len(of_kind) == 1 else None


def resolve(modalities: Sequence[str], feature_map: Iterable[tuple[str, str]],
            features: dict[str, FeatureSpec], *, dataset: str, who: str,
            label: str = 'optional', text_instances: int = 1) -> dict[str, str]:
  """`{target: feature name}` for `modalities` (+ 'label' when `label` is 'required', or when
  'optional' and the dataset has one); raises DataError with one sentence naming the fix.
  `who` starts the messages, e.g. "Task 'image_text'". `text_instances > 1` needs a text
  feature with several captions per example."""
  where = who
  explicit = {}
  for feature, target in feature_map:
    if target not in TARGETS:
      raise DataError(f'{where}: feature_map maps {feature!r} to {target!r}, which is not one of '
                      f'{", ".join(TARGETS)}.')
    if feature not in features:
      raise DataError(f'{where}: feature_map names feature {feature!r}, which dataset '
                      f'{dataset!r} does not have; its features are: {_listing(features)}.')
    if features[feature].kind not in KINDS[target]:
      raise DataError(f'{where}: feature_map maps {features[feature].describe()} to {target!r}, '
                      f'which needs a feature of kind {" or ".join(KINDS[target])}.')
    explicit[target] = feature
  unknown = [m for m in modalities if m not in MODALITIES]
  if unknown:
    raise DataError(f'{where}: unknown modality {unknown[0]!r}; use {", ".join(MODALITIES)}.')
  targets = list(modalities) + (['label'] if label in ('required', 'optional') else [])
  mapping = {}
  for target in targets:
    name = explicit.get(target) or _default(target, features, text_instances > 1)
    if name is None:
      if target == 'label' and label == 'optional':
        continue
      asks = 'classifies with labels' if target == 'label' else f'asks for modality {target!r}'
      raise DataError(
          f'{where} {asks} but dataset {dataset!r} has no {target} feature; its features are: '
          f'{_listing(features)}; map one with feature_map={{"<feature>": "{target}"}}.')
    mapping[target] = name
  if text_instances > 1 and 'text' in mapping and not is_multi_text(features[mapping['text']]):
    raise DataError(
        f'{where} asks for {text_instances} captions per example (text_instances, for MIL-NCE) '
        f'but dataset {dataset!r} has only the single caption field {mapping["text"]!r}: map a '
        'feature holding several captions with feature_map={"<feature>": "text"} or set '
        'text_instances=1.')
  return mapping


def available_modalities(features: dict[str, FeatureSpec]) -> tuple[str, ...]:
  """The modalities (and 'label') that a dataset feeds without an explicit feature map."""
  return tuple(t for t in TARGETS if _default(t, features) is not None)


def check_resolution(modalities: Sequence[str], resolution, who: str, where: str) -> None:
  """Every modality has its input size set; `where` names the config entry to fix."""
  for modality in modalities:
    for field in modalities_lib.get(modality).fields if modality in MODALITIES else ():
      value = getattr(resolution, field)
      if value is None or int(value) <= 0:
        raise DataError(f'{who} feeds {modality!r} but its {field} is {value}; '
                        f'set {where}.{field} to a positive size.')
