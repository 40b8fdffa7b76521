"""The benchmark registry: standard datasets, their curated class names and prompt sets, suites.

    from mmjax.evaluate import registry
    registry.select('cifar10,imagenet2012', None)   # -> [Benchmark, Benchmark]
    registry.select(None, 'image')                  # every dataset of the image suite

The facts live in JSON files beside this module (`benchmarks/`, shipped as package data):
  datasets.json     one entry per benchmark: TFDS name and split, modality, feature mapping,
                    task kinds ('zero_shot', 'probe', 'retrieval'), class-name and prompt set
                    names, probe splits, the command that prepares it, and a `label` rule
                    where the task's labels are derived from other features (`labels.py`)
  class_names.json  curated class names per set, in the TFDS label order (CLIP's published lists
                    where they exist), with where each set comes from
  prompts.json      prompt template sets (CLIP's 80 ImageNet templates, CLIP's per-dataset sets,
                    IMP/VATT-style video and audio sets)
  suites.json       named lists of benchmarks: image, imagenet, video, audio, retrieval, vtab
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
from importlib import resources

from mmjax.evaluate.errors import EvalError

KINDS = ('zero_shot', 'probe', 'retrieval')


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """One standard evaluation dataset (see the module docstring for the fields' sources)."""
  name: str
  dataset: str                       # for mmjax.data: 'name[/config][:version]'
  split: str
  modality: str                      # image | video | audio
  kinds: tuple[str, ...]
  feature_map: tuple[tuple[str, str], ...]   # (dataset feature, target) pairs
  suite: str
  prepare: str
  class_set: str | None = None
  class_names: tuple[str, ...] = ()
  prompt_set: str | None = None
  templates: tuple[str, ...] = ()
  train_split: str | None = None
  val_split: str | None = None
  sample_rate: int | None = None
  note: str = ''
  label_rule: dict | None = None     # labels derived from other features (`labels.py`)


@functools.lru_cache(maxsize=None)
def _load(name: str) -> dict:
  with resources.files('mmjax.evaluate').joinpath('benchmarks', name).open('r') as f:
    return json.load(f)


def class_name_set(name: str) -> tuple[str, ...]:
  sets = _load('class_names.json')['sets']
  if name not in sets:
    raise EvalError(f'unknown class-name set {name!r}: use one of {", ".join(sorted(sets))}.')
  return tuple(sets[name])


def prompt_set(name: str) -> tuple[str, ...]:
  sets = _load('prompts.json')['sets']
  if name not in sets:
    raise EvalError(f'unknown prompt set {name!r}: use one of {", ".join(sorted(sets))}.')
  return tuple(sets[name])


def prompt_set_names() -> list[str]:
  return sorted(_load('prompts.json')['sets'])


def source_of(kind: str, name: str) -> str:
  """Where a class-name (`kind='class_names'`) or prompt (`'prompts'`) set comes from."""
  data = _load(f'{kind}.json')
  return data['sources'][data['origin'][name]]


def _benchmark(name: str, e: dict) -> Benchmark:
  cls, pr, rule = e.get('class_names'), e.get('prompts'), e.get('label')
  names = class_name_set(cls) if cls else ()
  if rule and rule.get('rule') == 'subset':   # e.g. ImageNet-A: 200 of the 1000 names
    names = tuple(names[i] for i in rule['indices'])
  return Benchmark(
      name=name, dataset=e['tfds'], split=e['split'], modality=e['modality'],
      kinds=tuple(e['kinds']), feature_map=tuple(sorted(e['feature_map'].items())),
      suite=e['suite'], prepare=e['prepare'], class_set=cls,
      class_names=names, prompt_set=pr,
      templates=prompt_set(pr) if pr else (), train_split=e.get('train_split'),
      val_split=e.get('val_split'), sample_rate=e.get('sample_rate'), note=e.get('note', ''),
      label_rule=rule)


def benchmarks() -> dict[str, Benchmark]:
  """Every registered benchmark by name."""
  return {name: _benchmark(name, e) for name, e in _load('datasets.json').items()}


def suites() -> dict[str, dict]:
  """`{suite: {'description': str, 'datasets': [names]}}`."""
  return dict(_load('suites.json'))


def _unknown(what: str, name: str, known) -> EvalError:
  close = difflib.get_close_matches(name, list(known), n=3)
  hint = f' (did you mean {", ".join(close)}?)' if close else ''
  return EvalError(f'unknown {what} {name!r}{hint}: choose from {", ".join(sorted(known))}.')


def select(datasets: str | None, suite: str | None) -> list[Benchmark]:
  """The benchmarks named by `--datasets=a,b` and/or `--suite=NAME`, in that order, no repeats."""
  table, all_suites = benchmarks(), suites()
  names: list[str] = []
  if suite:
    for s in [x.strip() for x in suite.split(',') if x.strip()]:
      if s not in all_suites:
        raise _unknown('suite', s, all_suites)
      names += all_suites[s]['datasets']
  for n in [x.strip() for x in (datasets or '').split(',') if x.strip()]:
    if n not in table:
      raise _unknown('benchmark dataset', n, table)
    names.append(n)
  return [table[n] for n in dict.fromkeys(names)]
