"""Class labels a benchmark derives from its dataset's features, as VTAB and CLIP_benchmark
define the task (the registry entry's `label` rule; `registry.py`).

  subset   {"feature": "label", "indices": [...]}   a label of a larger label space -> its
           position among `indices` (ImageNet-A/-R: 200 of the 1000 ImageNet classes, scored
           over those 200 only, as CLIP and CLIP_benchmark do)
  count    {"feature": "objects/size", "offset": -3}   objects per example + offset (VTAB's
           clevr count_all: 3..10 objects -> 8 classes)
  closest  {"feature": "objects/location", "column": 2, "thresholds": [...],
            "where": "objects/type", "below": 3, "missing": 1000.0}
           the smallest `column` over the example's objects (only those whose `where` value is
           below `below`, when given; `missing` when none is), binned: the label is the number of
           thresholds below that distance, minus one (VTAB's clevr closest_object_distance and
           kitti closest_vehicle_distance)
"""

from __future__ import annotations

import numpy as np

from mmjax.data import sources
from mmjax.data.options import DataOptions
from mmjax.evaluate.errors import EvalError

RULES = ('subset', 'count', 'closest')
CHUNK = 1024


def _column(source, name: str) -> list:
  """Every example's value of feature `name`, in dataset order."""
  if name not in source.features:
    raise EvalError(f'dataset {source.name!r} has no feature {name!r} to derive labels from; its '
                    f'features are {", ".join(sorted(source.features))}: prepare the TFDS '
                    'version the registry names.')
  out = []
  for start in range(0, len(source), CHUNK):
    out += list(source.read(np.arange(start, min(start + CHUNK, len(source))), [name])[name])
  return out


def closest_bin(distance: float, thresholds) -> int:
  """VTAB's binning: how many thresholds lie below `distance`, minus one."""
  return int(np.sum(np.asarray(thresholds, np.float64) < distance)) - 1


def derive(rule: dict, source) -> np.ndarray:
  """Labels `[n]` (int64, dataset order) of every example of `source` by `rule`."""
  kind = rule.get('rule')
  if kind == 'subset':
    index = {int(c): i for i, c in enumerate(rule['indices'])}
    raw = [int(v) for v in _column(source, rule['feature'])]
    outside = sorted({v for v in raw if v not in index})
    if outside:
      raise EvalError(f'dataset {source.name!r} has labels outside its {len(index)}-class subset '
                      f'(e.g. {outside[0]}): prepare the TFDS version the registry names.')
    return np.array([index[v] for v in raw], np.int64)
  if kind == 'count':
    return np.array([len(v) + int(rule['offset']) for v in _column(source, rule['feature'])],
                    np.int64)
  if kind == 'closest':
    values = _column(source, rule['feature'])
    keep = _column(source, rule['where']) if rule.get('where') else [None] * len(values)
    out = []
    for v, w in zip(values, keep):
      d = np.asarray(v, np.float64).reshape(-1, np.shape(v)[-1] if np.ndim(v) > 1 else 1)
      d = d[:, int(rule.get('column', 0))]
      if w is not None:
        d = d[np.asarray(w, np.int64) < int(rule['below'])]
      out.append(closest_bin(d.min() if len(d) else float(rule.get('missing', np.inf)),
                             rule['thresholds']))
    return np.array(out, np.int64)
  raise EvalError(f'unknown label rule {kind!r}: use one of {", ".join(RULES)}.')


def derived_labels(rule: dict, dataset: str, split: str, config) -> np.ndarray:
  """`derive` over `dataset`/`split` as the config's data dir holds it."""
  return derive(rule, sources.open_source(dataset, split, DataOptions.from_config(config).data_dir))
