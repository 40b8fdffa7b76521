"""Evaluate one model on a list of `EvalEntry` (see `entries.py`): zero-shot classification,
retrieval with every caption, few-shot ridge probes and the full linear probe.

Each dataset's embeddings are computed once (one pass over the split) and shared by all its
metrics; the probes' training split is read once for both probes; prompt classifiers come from the
`TextCache` (once per checkpoint and prompt set).

Keys of one `config.evaluation.datasets.<name>` entry (`<name>` labels the results):
  dataset, split, modalities ('image,video,audio'), batch_size, num_clips,
  image_size, num_frames, audio_samples, text_length   input sizes, as in a task
  zero_shot (True)       needs class labels; retrieval runs when the dataset has captions
  linear_probe (False)   logistic regression on `probe_split` ('train') features, its L2 chosen
                         on `val_split` (default: a held-out fifth of `probe_split`)
  few_shot (False)       big_vision's fewshot_lsr: least squares, 1/5/10/25 shots x seeds 0-2
  few_shot_l2 (1024)     its fixed L2 (big_vision's `l2_reg`, 2^10)
  dedup_captions (False) retrieval over distinct captions instead of every caption (see
                         `retrieval.py`; not comparable with published numbers)
  templates ({})         per modality: a template set name or a list of templates

With `features_dir`, the embeddings each result was computed from are saved (`features.py`).
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from flax import nnx

from mmjax.core import partitioning
from mmjax.data import pipeline
from mmjax.data.options import DataOptions
from mmjax.data import run_tokenizer
from mmjax.evaluate import captions as captions_lib
from mmjax.evaluate import (entries as entries_lib, features as features_lib, few_shot,
                            labels as labels_lib, linear_probe, plots, registry, report,
                            retrieval, suite_report, zero_shot)
from mmjax.evaluate.embedder import Embedder
from mmjax.evaluate.errors import EvalError
from mmjax.evaluate.restore import restore_params
from mmjax.evaluate.text_cache import TextCache, params_fingerprint
from mmjax.config.defaults import setting

CONFUSION_MAX_CLASSES = 100   # larger matrices are not readable as a figure


def _batches(entry, config, split: str, modalities):
  return pipeline.make_eval_batches(
      entry.dataset, split, modalities, entry.resolution, config, batch_size=entry.batch_size,
      num_clips=entry.num_clips, process_index=jax.process_index(),
      process_count=jax.process_count(), feature_map=entry.feature_map)


def _labels(entry, config, split: str, data: dict) -> dict:
  """`data` with the labels of a benchmark whose labels are derived (`labels.py`)."""
  if not entry.label_rule:
    return data
  derived = labels_lib.derived_labels(entry.label_rule, entry.dataset, split, config)
  n = len(data[entry.modalities[0]]['embed'])
  if len(derived) != n:
    raise EvalError(f'{entry.name}: {len(derived)} derived labels for {n} examples.')
  classes = len(entry.class_names or ())
  if len(derived) and (derived.min() < 0 or derived.max() >= classes):
    raise EvalError(f'{entry.name}: labels derived by its {entry.label_rule["rule"]!r} rule fall '
                    f'outside its {classes} classes: prepare the TFDS version the registry names.')
  return {**data, 'label': derived}


def _class_names(entry, info) -> list[str]:
  if entry.label_rule:   # labels derived by the registry's rule: its names are the classes
    if not entry.class_names:
      raise EvalError(f'{entry.name}: a derived-label benchmark needs curated class names.')
    return list(entry.class_names)
  if entry.class_names is None:
    return list(info.class_names)
  if len(entry.class_names) != len(info.class_names):
    raise EvalError(f'{entry.name}: the curated class names ({entry.class_set}) list '
                    f'{len(entry.class_names)} classes but {entry.dataset!r} has '
                    f'{len(info.class_names)}: prepare the TFDS version the registry names.')
  return list(entry.class_names)


def _probes(embedder, config, entry, data, num_classes: int, seed: int,
            features_dir: str | None = None) -> tuple[dict, dict]:
  """Few-shot and full linear probe results per modality, on one read of the training split
  (saved to `features_dir` when given)."""
  train = _labels(entry, config, entry.train_split, embedder.collect(
      _batches(entry, config, entry.train_split, entry.modalities), entry.modalities,
      entry.num_clips))
  if features_dir is not None and jax.process_index() == 0 and entry.train_split != entry.split:
    features_lib.save(features_dir, entry.name, entry.train_split, train, entry.modalities)
  val = None
  if entry.linear_probe and entry.val_split:
    val = _labels(entry, config, entry.val_split, embedder.collect(
        _batches(entry, config, entry.val_split, entry.modalities), entry.modalities,
        entry.num_clips))
  fs, lp = {}, {}
  for m in entry.modalities:
    if entry.few_shot:
      fs[m] = few_shot.few_shot(train[m]['features'], train['label'], data[m]['features'],
                                data['label'], num_classes, l2=entry.few_shot_l2)
    if entry.linear_probe:
      extra = {} if val is None else {'val_x': val[m]['features'], 'val_y': val['label']}
      lp[m] = linear_probe.linear_probe(train[m]['features'], train['label'],
                                        data[m]['features'], data['label'], num_classes,
                                        seed=seed, **extra)
  return fs, lp


def image_preprocessing(config) -> dict:
  """How eval images reach the model: the host resize and the on-device normalisation."""
  m, resize = config.model, DataOptions.from_config(config).eval_resize
  mean, std = tuple(setting(m, 'model.pixel_mean')), tuple(setting(m, 'model.pixel_std'))
  return {'resize': resize or 'central square, antialiased triangle filter',
          'crop': 'centre' if not resize.startswith('squash') else 'none',
          'normalize': (f'(x / 255 - {list(mean)}) / {list(std)}' if mean else 'x / 127.5 - 1')}


def evaluate_entry(embedder: Embedder, config, entry, tokenizer, cache: TextCache,
                   features_dir: str | None = None) -> dict:
  """Every metric of one entry. Returns `{'results': {...}, 'confusion': {modality: matrix}}`.
  With `features_dir`, the embeddings are saved there too (`features.py`)."""
  if entry.batch_size % embedder.dp:
    raise EvalError(f'{entry.name}: batch_size={entry.batch_size} is not divisible by the '
                    f'data-parallel size {embedder.dp}: choose a multiple of {embedder.dp}.')
  info = pipeline.dataset_info(entry.dataset, config, entry.split, entry.feature_map)
  labelled = entry.zero_shot or entry.few_shot or entry.linear_probe
  if labelled and not info.class_names and not entry.label_rule:
    raise EvalError(f'dataset {entry.dataset!r} has no class labels, which zero-shot '
                    'classification and linear probes need: set config.evaluation.datasets.'
                    f'{entry.name}.zero_shot and .linear_probe to False, or evaluate a labelled '
                    'dataset.')
  with_text = entry.retrieval and ('text' in info.modalities or
                                   any(t == 'text' for _, t in entry.feature_map))
  length = entry.resolution.text_length
  if (entry.zero_shot or with_text) and not length:
    raise EvalError(f'config.evaluation.datasets.{entry.name}.text_length is not set: zero-shot '
                    'prompts and captions need a token length.')
  data = embedder.collect(_batches(entry, config, entry.split, entry.modalities),
                          entry.modalities, entry.num_clips)
  data = _labels(entry, config, entry.split, data) if labelled else data
  n = len(data[entry.modalities[0]]['embed'])
  res: dict = {'dataset': entry.dataset, 'split': entry.split, 'suite': entry.suite,
               'num_examples': int(n), 'zero_shot': {}, 'retrieval': {}, 'few_shot': {},
               'linear_probe': {}, 'templates': {}}
  confusion = {}
  names = _class_names(entry, info) if labelled else []
  if names:
    res['class_names'] = {'set': entry.class_set, 'names': names,
                          'source': (registry.source_of('class_names', entry.class_set)
                                     if entry.class_set != 'dataset' else 'dataset labels')}
    if entry.label_rule:   # how the labels were derived (the subset's indices left out)
      res['class_names']['derived'] = {k: v for k, v in entry.label_rule.items()
                                       if k != 'indices'}
  for m in entry.modalities:
    if entry.zero_shot:
      set_name, ts = entry.templates[m]
      weights = cache.classifier(names, ts, length)
      out = zero_shot.evaluate(data[m]['embed'], data['label'], weights)
      res['zero_shot'][m] = {k: out[k] for k in ('top1', 'top5', 'mean_per_class_recall')}
      res['templates'][m] = {'set': set_name, 'count': len(ts), 'templates': list(ts)}
      confusion[m] = out['confusion']
  if with_text:
    item_captions = captions_lib.read_captions(entry.dataset, entry.split, entry.feature_map,
                                               config)
    if len(item_captions) != n:
      raise EvalError(f'{entry.name}: {len(item_captions)} caption lists for {n} items.')
    keep = np.array([i for i, caps in enumerate(item_captions) if len(caps)], np.int64)
    item_captions = [item_captions[i] for i in keep]   # an item with no caption: not in the pool
    ids, mask, positives = captions_lib.tokenized_pool(item_captions, tokenizer, length)
    text_item = np.repeat(np.arange(len(keep)), [len(c) for c in item_captions])
    all_text = embedder.embed_text(ids, mask, entry.batch_size)   # every caption
    rows, distinct = captions_lib.distinct(ids, mask, text_item, len(keep))
    text_emb = all_text[rows] if entry.dedup_captions else all_text
    positives = distinct if entry.dedup_captions else positives
    for m in entry.modalities:
      res['retrieval'].update(retrieval.evaluate(
          np.asarray(data[m]['embed'])[keep], text_emb, positives, m,
          ties='pessimistic' if entry.dedup_captions else 'order'))
    res['retrieval_pool'] = {'items': int(len(keep)), 'captions': int(len(ids)),
                             'distinct_captions': int(len(rows)),
                             'candidates': int(len(text_emb)),
                             'rule': retrieval.rule(entry.dedup_captions)}
    if len(keep) < n:
      res['retrieval_pool']['uncaptioned_items'] = int(n - len(keep))
    if len(rows) < 2:  # every item matches the one text: R@1 100 says nothing
      res['retrieval_pool']['flag'] = (
          f'{len(rows)} distinct caption(s) as tokenised: retrieval scores are meaningless; '
          "check the dataset's captions, its tokenizer and text_length")
      logging.warning('%s: %s.', entry.name, res['retrieval_pool']['flag'])
  if features_dir is not None and jax.process_index() == 0:
    res['features'] = features_lib.relative(features_lib.save(
        features_dir, entry.name, entry.split, data, entry.modalities,
        text=all_text if with_text else None,
        text_item=keep[text_item] if with_text else None))
  if entry.few_shot or entry.linear_probe:
    res['few_shot'], res['linear_probe'] = _probes(embedder, config, entry, data, len(names),
                                                   int(setting(config, 'seed')), features_dir)
    if res['few_shot']:
      res['few_shot_protocol'] = few_shot.REFERENCE
    if res['linear_probe']:
      res['linear_probe_protocol'] = linear_probe.REFERENCE
  res['preprocessing'] = {'resolution': entry.resolution.describe(), 'clips': entry.num_clips,
                          'image': 'central square crop, resized', 'text_length': length}
  if 'audio' in entry.modalities:   # samples are cropped as stored: no resampling
    res['preprocessing']['audio_sample_rate'] = {
        'dataset': entry.sample_rate, 'model': config.get('model', {}).get('audio', {}).get(
            'sample_rate', None)}
  if entry.note:
    res['note'] = entry.note
  return {'results': res, 'confusion': confusion, 'class_names': names}


def _model_parts(model_or_params):
  if isinstance(model_or_params, nnx.Module):
    graphdef, state = nnx.split(model_or_params)
    return graphdef, nnx.to_pure_dict(state)
  graphdef, params = model_or_params
  return graphdef, params


def evaluate_params(config, model_or_params, step: int, workdir: str | None, mesh=None, *,
                    entries=None, output: str | None = None, cache_dir: str | None = None,
                    skipped=None, checkpoint: str = '', reuse: dict | None = None,
                    save_features: bool = False, tokenizer=None) -> dict:
  """Evaluates in-memory weights: an NNX model, or `(graphdef, params)` as in the train state.

  `entries` default to the config's evaluation datasets. Reports go to `output` (default
  `workdir/eval`; none when both are None): `step_<N>.json`, one table per suite, bar charts,
  confusion matrices (process 0 only). Returns the report dict (see `report.py`). `reuse`, a dict
  kept by the caller across calls (the training loop), keeps one `Embedder`, so evaluating new
  weights of the same model compiles nothing again. `save_features` writes the embeddings to
  `OUTPUT/features/` (`features.py`); `tokenizer` defaults to the config's (an export passes
  its own).
  """
  mesh = partitioning.make_mesh(config.mesh) if mesh is None else mesh
  entries = entries_lib.from_config(config) if entries is None else entries
  graphdef, params = _model_parts(model_or_params)
  if reuse is not None and 'embedder' in reuse:
    embedder = reuse['embedder']
    embedder.params = params
  else:
    embedder = Embedder(config, graphdef, params, mesh)
    if reuse is not None:
      reuse['embedder'] = embedder
  tokenizer = pipeline.load_tokenizer(config) if tokenizer is None else tokenizer
  cache = TextCache(embedder, tokenizer, params_fingerprint(params, step), cache_dir)
  output = output if output is not None else (report.eval_dir(workdir) if workdir else None)
  if save_features and output is None:
    raise EvalError('saving features needs a report directory: pass an output.')
  features_dir = os.path.join(output, features_lib.FOLDER) if save_features else None
  results, figures, skipped = {}, {}, dict(skipped or {})
  for entry in entries:
    missing = [m for m in entry.modalities if m not in embedder.modalities]
    if missing and entry.prepare is not None:   # a benchmark this model cannot read: skip it
      skipped[entry.name] = {'reason': f'the model has no {missing[0]} input.', 'prepare': '',
                             'suite': entry.suite}
      continue
    out = evaluate_entry(embedder, config, entry, tokenizer, cache, features_dir)
    results[entry.name] = out['results']
    figures[entry.name] = (out['confusion'], out['class_names'])
  rep = report.build_full_report(step, results, tokenizer=tokenizer.describe(),
                                 lowercase=tokenizer.lowercase, checkpoint=checkpoint,
                                 skipped=skipped,
                                 text_cache={'hits': cache.hits, 'misses': cache.misses})
  rep['preprocessing']['image'] = image_preprocessing(config)
  if output is not None and jax.process_index() == 0:
    report.write_report(rep, output)
    suite_report.write_suite_reports(rep, output)
    for name, (matrices, names) in figures.items():
      for m, matrix in matrices.items():
        if len(names) <= CONFUSION_MAX_CLASSES:
          plots.plot_confusion(matrix, names, plots.confusion_path(output, name, m, step),
                               f'{name} ({results[name]["dataset"]} {results[name]["split"]}) '
                               f'{m}: zero-shot, step {step}')
  return rep


def evaluate_checkpoint(config, workdir: str, step: int | None = None, **kwargs) -> dict:
  """Evaluates the latest (or `step`'s) checkpoint of `workdir`; returns the report dict."""
  run_tokenizer.check_run(config, workdir, 'evaluate')  # trained with another: refused
  mesh = partitioning.make_mesh(config.mesh)
  step, graphdef, params = restore_params(config, workdir, mesh, step)
  return evaluate_params(config, (graphdef, params), step, workdir, mesh, **kwargs)
