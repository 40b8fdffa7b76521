"""What to evaluate: one `EvalEntry` per dataset, from the config's own evaluation datasets or
from standard benchmarks (`registry.py`).

A config entry (`config.evaluation.datasets.<name>`, fields in `one_model.py`) whose dataset is a
registered benchmark's (e.g. `imagenet2012`) takes that benchmark's curated class names and prompt
set; any other takes its class names from the dataset and its templates from `templates.py`. A
`templates` override in the entry wins over both. A benchmark
takes the registry's curated class names and prompt set, and the input sizes the model was
trained with (the config's first evaluation entry, then its tasks, that set each size).
"""

from __future__ import annotations

import dataclasses

from mmjax.config.defaults import setting
from mmjax.core import modalities as modalities_lib
from mmjax.core.tasks import Resolution
from mmjax.evaluate import few_shot as few_shot_lib, registry, templates
from mmjax.evaluate.errors import EvalError

SIZE_KEYS = {m.name: m.fields for m in modalities_lib.all_records()}  # core/modalities.py


@dataclasses.dataclass(frozen=True)
class EvalEntry:
  name: str
  dataset: str
  split: str
  modalities: tuple[str, ...]
  resolution: Resolution
  batch_size: int
  num_clips: int = 1
  feature_map: tuple[tuple[str, str], ...] = ()
  zero_shot: bool = True
  retrieval: bool = True
  few_shot: bool = False
  linear_probe: bool = False
  class_names: tuple[str, ...] | None = None   # None: the dataset's own label names
  class_set: str = 'dataset'
  templates: dict = dataclasses.field(default_factory=dict)   # modality -> (set name, templates)
  train_split: str | None = None
  val_split: str | None = None
  suite: str = 'config_datasets'
  prepare: str | None = None
  note: str = ''
  sample_rate: int | None = None   # the dataset's audio rate, when the registry knows it
  dedup_captions: bool = False     # retrieval over distinct captions (not the field's rule)
  few_shot_l2: float = few_shot_lib.L2_REG
  label_rule: dict | None = None   # labels derived from other features (`labels.py`)


def _names(value) -> tuple[str, ...]:
  if isinstance(value, str):
    return tuple(v.strip() for v in value.split(',') if v.strip())
  return tuple(value or ())


def _first(value):
  if isinstance(value, (list, tuple)):
    return value[0] if value else None
  return value


def _template_choice(modality: str, override, bench=None) -> tuple[str, tuple[str, ...]]:
  if override is None or (isinstance(override, str) and override in ('', 'default')):
    if bench is not None and bench.templates:
      return bench.prompt_set, bench.templates
    return f'mmjax_digits_{modality}', templates.get_templates(modality)
  if isinstance(override, str) and override not in templates.TEMPLATES:
    return override, registry.prompt_set(override)
  label = override if isinstance(override, str) else 'custom'
  return label, templates.get_templates(modality, override)


def from_config(config) -> list[EvalEntry]:
  """The entries of `config.evaluation.datasets`, in name order."""
  datasets = setting(setting(config, 'evaluation'), 'evaluation.datasets')
  if not datasets:
    raise EvalError('config.evaluation.datasets is empty: add a dataset to evaluate on '
                    '(see configs/demo.py), or choose benchmarks with --datasets or --suite.')
  # A config entry reads the dataset's own label: benchmarks with other labels (a derived rule,
  # another label feature, e.g. VTAB's dsprites tasks) lend it no class names.
  by_dataset = {b.dataset.split(':')[0]: b for b in registry.benchmarks().values()
                if not b.label_rule and all(f == 'label' for f, t in b.feature_map
                                            if t == 'label')}
  out = []
  for name in sorted(datasets.keys()):
    cfg = datasets[name]
    modalities = _names(cfg.modalities)
    overrides = dict(setting(cfg, 'evaluation.datasets.*.templates') or {})
    bench = by_dataset.get(str(cfg.dataset).split(':')[0])
    out.append(EvalEntry(
        name=name, dataset=cfg.dataset, split=cfg.split, modalities=modalities,
        resolution=Resolution(**{f: cfg.get(f, None)
                                 for f, _ in modalities_lib.resolution_fields()}),
        batch_size=int(cfg.batch_size),
        num_clips=int(setting(cfg, 'evaluation.datasets.*.num_clips')),
        feature_map=tuple(dict(setting(cfg, 'evaluation.datasets.*.feature_map') or {}).items()),
        zero_shot=bool(setting(cfg, 'evaluation.datasets.*.zero_shot')),
        retrieval=bool(setting(cfg, 'evaluation.datasets.*.retrieval')),
        few_shot=bool(setting(cfg, 'evaluation.datasets.*.few_shot')),
        linear_probe=bool(setting(cfg, 'evaluation.datasets.*.linear_probe')),
        templates={m: _template_choice(m, overrides.get(m), bench) for m in modalities},
        class_names=bench.class_names if bench is not None and bench.class_names else None,
        class_set=bench.class_set if bench is not None and bench.class_set else 'dataset',
        train_split=str(setting(cfg, 'evaluation.datasets.*.probe_split')),
        val_split=cfg.get('val_split', None) or None,
        dedup_captions=bool(setting(cfg, 'evaluation.datasets.*.dedup_captions')),
        few_shot_l2=float(cfg.get('few_shot_l2', few_shot_lib.L2_REG))))
  return out


def trained_resolution(config, modalities, strict: bool = True) -> Resolution:
  """The input sizes `modalities` + text were trained at (first config entry/task setting each);
  a size no entry sets is an EvalError, or None when not `strict`."""
  evals = setting(setting(config, 'evaluation'), 'evaluation.datasets')
  where = [evals[k] for k in sorted(evals.keys())] + [config.tasks[k] for k in
                                                      sorted(config.tasks.keys())]
  sizes = {}
  for m in tuple(modalities) + ('text',):
    for key in SIZE_KEYS[m]:
      found = [_first(s.get(key, None)) for s in where if _first(s.get(key, None))]
      if not found and not strict:
        continue
      if not found:
        raise EvalError(f'the run config sets no {key} (needed for {m} inputs): set it in a '
                        'config.evaluation.datasets entry with --config.evaluation...')
      sizes[key] = int(found[0])
  return Resolution(**sizes)


def from_benchmarks(benchmarks, config, *, batch_size: int, probes: tuple[str, ...] = (),
                    num_clips: int = 1, dedup_captions: bool = False,
                    few_shot_l2: float = few_shot_lib.L2_REG) -> list[EvalEntry]:
  """Entries for registry benchmarks; `probes` adds 'few_shot' and/or 'linear_probe' where the
  benchmark allows probes and has a training split."""
  out = []
  for b in benchmarks:
    can_probe = 'probe' in b.kinds and b.train_split is not None
    out.append(EvalEntry(
        name=b.name, dataset=b.dataset, split=b.split, modalities=(b.modality,),
        resolution=trained_resolution(config, (b.modality,), strict=False),
        batch_size=int(batch_size),
        num_clips=int(num_clips) if modalities_lib.get(b.modality).clipped else 1,
        feature_map=b.feature_map, zero_shot='zero_shot' in b.kinds,
        retrieval='retrieval' in b.kinds, few_shot=can_probe and 'few_shot' in probes,
        linear_probe=can_probe and 'linear_probe' in probes,
        class_names=b.class_names or None, class_set=b.class_set or 'dataset',
        templates={b.modality: (b.prompt_set, b.templates)} if b.templates else {},
        train_split=b.train_split, val_split=b.val_split, suite=b.suite, prepare=b.prepare,
        note=b.note, sample_rate=b.sample_rate, dedup_captions=bool(dedup_captions),
        few_shot_l2=float(few_shot_l2), label_rule=b.label_rule))
  return out
