"""Evaluate one model: zero-shot classification, retrieval and linear probes on every dataset of
`config.evaluation.datasets`, then the report (`DIR/eval/step_<N>.json`) and confusion plots.

Keys of one `config.evaluation.datasets.<name>` entry (`<name>` labels the results):
  dataset, split, modalities ('image,video,audio'), batch_size, num_clips,
  image_size, num_frames, audio_samples, text_length   input sizes, as in a task
  linear_probe (False)   train a probe on `probe_split` ('train') features, test on `split`
  zero_shot (True)       needs class labels; retrieval runs when the dataset has captions
  templates ({})         per modality: a template set name or a list of templates
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from mmjax.data import pipeline
from mmjax.data.tasks import Resolution
from mmjax.evaluate import linear_probe, plots, report, retrieval, templates, zero_shot
from mmjax.evaluate.embedder import Embedder
from mmjax.evaluate.errors import EvalError
from mmjax.evaluate.restore import restore_params
from mmjax.train import partitioning


def _names(value) -> tuple[str, ...]:
  if isinstance(value, str):
    return tuple(v.strip() for v in value.split(',') if v.strip())
  return tuple(value or ())


def _entries(config) -> list[tuple[str, object]]:
  datasets = config.get('evaluation', {}).get('datasets', {}) if 'evaluation' in config else {}
  if not datasets:
    raise EvalError('config.evaluation.datasets is empty: add a dataset to evaluate on '
                    '(see configs/demo.py).')
  return [(name, datasets[name]) for name in sorted(datasets.keys())]


def _resolution(cfg) -> Resolution:
  return Resolution(image_size=cfg.get('image_size', None), num_frames=cfg.get('num_frames', None),
                    audio_samples=cfg.get('audio_samples', None),
                    text_length=cfg.get('text_length', None))


def _batches(cfg, config, split: str, modalities, resolution: Resolution):
  return pipeline.make_eval_batches(
      cfg.dataset, split, modalities, resolution, config, batch_size=int(cfg.batch_size),
      num_clips=int(cfg.get('num_clips', 1)), process_index=jax.process_index(),
      process_count=jax.process_count(),
      feature_map=tuple(dict(cfg.get('feature_map', {}) or {}).items()))


def _text_embeddings(embedder: Embedder, tokenizer, texts, length: int, batch_size: int):
  ids, mask = tokenizer.encode(list(texts), length)
  return embedder.embed_text(ids, mask, batch_size)


def evaluate_dataset(embedder: Embedder, config, name: str, cfg, tokenizer, step: int,
                     workdir: str | None) -> dict:
  """Results of one evaluation entry: `{section: {'<name>/<key>': metrics}}` + preprocessing."""
  modalities = _names(cfg.modalities)
  res, clips, bs = _resolution(cfg), int(cfg.get('num_clips', 1)), int(cfg.batch_size)
  if bs % embedder.dp:
    raise EvalError(f'config.evaluation.datasets.{name}.batch_size={bs} is not divisible by the '
                    f'data-parallel size {embedder.dp}: choose a multiple of {embedder.dp}.')
  info = pipeline.dataset_info(cfg.dataset, config, cfg.split)
  want_zs, want_probe = bool(cfg.get('zero_shot', True)), bool(cfg.get('linear_probe', False))
  if (want_zs or want_probe) and not info.class_names:
    raise EvalError(f'dataset {cfg.dataset!r} has no class labels, which zero-shot classification '
                    f'and linear probes need: set config.evaluation.datasets.{name}.zero_shot and '
                    '.linear_probe to False, or evaluate a labelled dataset.')
  with_text = bool(cfg.get('retrieval', True)) and 'text' in info.modalities
  if (want_zs or with_text) and not res.text_length:
    raise EvalError(f'config.evaluation.datasets.{name}.text_length is not set: zero-shot '
                    'prompts and captions need a token length.')
  data = embedder.collect(_batches(cfg, config, cfg.split, modalities + ('text',) * with_text, res),
                          modalities, clips)
  out = {'zero_shot': {}, 'retrieval': {}, 'linear_probe': {}, 'templates': {}}

  if with_text:  # distinct captions (as the model reads them: token ids) embedded once
    keys, positives = retrieval.caption_positives(
        [ids[m > 0] for ids, m in zip(data['text'], data['text_mask'])])
    ids = np.zeros((len(keys), res.text_length), np.int32)
    for i, k in enumerate(keys):
      ids[i, :len(k)] = k
    text_emb = embedder.embed_text(ids, (ids > 0).astype(np.int32), bs)
  overrides = dict(cfg.get('templates', {}) or {})
  for m in modalities:
    key = f'{name}/{m}'
    if want_zs:
      ts = templates.get_templates(m, overrides.get(m))
      prompts = templates.build_prompts(info.class_names, ts)
      flat = _text_embeddings(embedder, tokenizer, [p for row in prompts for p in row],
                              res.text_length, bs)
      weights = zero_shot.classifier_weights(flat.reshape(len(prompts), len(ts), -1))
      result = zero_shot.evaluate(data[m]['embed'], data['label'], weights)
      out['zero_shot'][key] = {'top1': result['top1'], 'top5': result['top5']}
      out['templates'][key] = list(ts)
      if workdir is not None and jax.process_index() == 0:
        plots.plot_confusion(result['confusion'], info.class_names,
                             plots.confusion_path(workdir, name, m, step),
                             f'{name} ({cfg.dataset} {cfg.split}) {m}: zero-shot, step {step}')
    if with_text:
      for direction, metrics in retrieval.evaluate(data[m]['embed'], text_emb, positives,
                                                   m).items():
        out['retrieval'][f'{name}/{direction}'] = metrics
  if want_probe:
    split = str(cfg.get('probe_split', 'train'))
    train = embedder.collect(_batches(cfg, config, split, modalities, res), modalities, clips)
    for m in modalities:
      probe = linear_probe.train_linear_probe(
          train[m]['features'], train['label'], data[m]['features'], data['label'],
          len(info.class_names), seed=int(config.get('seed', 0)))
      out['linear_probe'][f'{name}/{m}'] = {k: probe[k] for k in ('top1', 'train_top1')}
  out['max_length'], out['clips'] = res.text_length, clips
  return out


def _model_parts(model_or_params):
  if isinstance(model_or_params, nnx.Module):
    graphdef, state = nnx.split(model_or_params)
    return graphdef, nnx.to_pure_dict(state)
  graphdef, params = model_or_params
  return graphdef, params


def evaluate_params(config, model_or_params, step: int, workdir: str | None, mesh=None,
                    reuse: dict | None = None) -> dict:
  """Evaluates in-memory weights: an NNX model, or `(graphdef, params)` as in the train state.

  Writes `workdir/eval/step_<step>.json` and the confusion plots (process 0; not when `workdir`
  is None) and returns the report dict (see `report.py`). `reuse`, a dict kept by the caller
  across calls (the training loop), keeps one `Embedder`, so evaluating new weights of the same
  model compiles nothing again.
  """
  mesh = partitioning.make_mesh(config.mesh) if mesh is None else mesh
  graphdef, params = _model_parts(model_or_params)
  if reuse is not None and 'embedder' in reuse:
    embedder = reuse['embedder']
    embedder.params = params
  else:
    embedder = Embedder(config, graphdef, params, mesh)
    if reuse is not None:
      reuse['embedder'] = embedder
  tokenizer = pipeline.load_tokenizer(config)
  sections = {'zero_shot': {}, 'retrieval': {}, 'linear_probe': {}}
  prep = {'templates': {}, 'tokenizer': tokenizer.describe(), 'max_length': {},
          'lowercase': tokenizer.lowercase, 'clips': {}}
  for name, cfg in _entries(config):
    out = evaluate_dataset(embedder, config, name, cfg, tokenizer, step, workdir)
    for section in sections:
      sections[section].update(out[section])
    prep['templates'].update(out['templates'])
    prep['max_length'][name], prep['clips'][name] = out['max_length'], out['clips']
  rep = report.build_report(step, preprocessing=prep, **sections)
  if workdir is not None and jax.process_index() == 0:
    report.write_report(rep, workdir)
  return rep


def evaluate_checkpoint(config, workdir: str, step: int | None = None) -> dict:
  """Evaluates the latest (or `step`'s) checkpoint of `workdir`; returns the report dict."""
  mesh = partitioning.make_mesh(config.mesh)
  step, graphdef, params = restore_params(config, workdir, mesh, step)
  return evaluate_params(config, (graphdef, params), step, workdir, mesh)
