"""`OUT/README.md`: the model card a model hub shows beside `model.safetensors` and `config.json`.

It says what the model was trained on (tasks, datasets, modalities, batch sizes, steps), how it
was evaluated and with what numbers (the run's `DIR/eval/step_<N>.json` for the exported step,
when there is one), what it is for, and how to load it without mmjax
(`load_safetensors.py`, shipped as `examples/` in the repository and `mmjax.examples` installed).
The front matter is the YAML block hubs read for metadata.
"""

from __future__ import annotations

import os

from mmjax.evaluate import report as report_lib
from mmjax.config.defaults import setting

SECTION_TITLES = {'zero_shot': 'Zero-shot classification (top-1 / top-5, %)',
                  'retrieval': 'Retrieval (recall@k, %; ranks)',
                  'few_shot': "Few-shot least squares (big_vision's fewshot_lsr; top-1, %)",
                  'linear_probe': 'Linear probe on frozen features (top-1, %; chosen L2)'}
# Columns in reading order; anything else follows alphabetically.
METRIC_ORDER = ('top1', 'top5', 'mean_per_class_recall', 'R@1', 'R@5', 'R@10', 'median_rank',
                'mean_rank', '1shot', '5shot', '10shot', '25shot', 'train_top1', 'l2')
LOADER = 'load_safetensors.py'   # examples/ in the repository; mmjax.examples when installed


def _task_rows(config) -> list[str]:
  rows = ['| task | dataset (split) | modalities | objective | global batch | weight |',
          '|---|---|---|---|---|---|']
  for name, t in sorted(config['tasks'].items()):
    objective = ', '.join(filter(None, [
        f"contrastive {t['contrast']}" if t.get('contrast') else '',
        f"MIL-NCE {t['mil_nce']}" if t.get('mil_nce') else '',
        f"classification of {t['classify']} ({t['num_classes']} classes)"
        if t.get('classify') else '']))
    rows.append(f"| {name} | {t['dataset']} ({setting(t, 'tasks.*.split')}) | {t['modalities']} | "
                f"{objective} | {t['batch_size']} | {setting(t, 'tasks.*.weight')} |")
  return rows


def _metric(name: str, value) -> str:
  if isinstance(value, dict):   # few-shot: {'top1', 'top1_std', 'l2'}
    value = value.get('top1')
  if name == 'l2':   # a regularisation strength, not a fraction
    return f'{value:g}'
  if isinstance(value, float) and 'rank' not in name:
    return f'{100 * value:.2f}'
  return f'{value:.1f}' if isinstance(value, float) else str(value)


def _order(metric: str):
  return (METRIC_ORDER.index(metric), '') if metric in METRIC_ORDER else (len(METRIC_ORDER),
                                                                         metric)


def _eval_rows(evaluation: dict) -> list[str]:
  out = []
  for section in report_lib.SECTIONS:
    entries = evaluation.get(section) or {}
    if section == 'few_shot':   # {'<ds>/<m>': {'<k>shot': {..}}}: one column per shot, then L2
      entries = {name: {**shots, 'l2': next(iter(shots.values()))['l2']}
                 for name, shots in entries.items() if shots}
    if not entries:
      continue
    metrics = sorted({m for v in entries.values() for m in v}, key=_order)
    out += ['', f'**{SECTION_TITLES[section]}**', '',
            '| | ' + ' | '.join(metrics) + ' |', '|---' * (len(metrics) + 1) + '|']
    for name, values in sorted(entries.items()):
      out.append(f'| {name} | ' + ' | '.join(_metric(m, values[m]) if m in values else ''
                                              for m in metrics) + ' |')
  return out


def _evaluation_part(config, workdir: str, step: int) -> list[str]:
  datasets = setting(setting(config, 'evaluation'), 'evaluation.datasets')
  protocol = ['Zero-shot classification embeds each test example and the class-name prompts '
              '(templates per modality) and picks the nearest class by cosine similarity; '
              'retrieval ranks every test item against every caption, each caption its own '
              "candidate (CLIP_benchmark's rule); few-shot is big_vision's fewshot_lsr (closed-"
              'form least squares on frozen pooled features, L2 1024, seeds 0-2); the linear '
              'probe fits a logistic regression to convergence on frozen pooled features of the '
              'probe split, its L2 chosen on a validation split as CLIP_benchmark does.']
  for name, d in sorted(datasets.items()):
    split, clips = (setting(d, f'evaluation.datasets.*.{k}') for k in ('split', 'num_clips'))
    protocol.append(f"- `{name}`: {d['dataset']} ({split}), modalities "
                    f"{d['modalities']}, {clips} clip(s) per example.")
  path = report_lib.report_path(workdir, step)
  if os.path.isfile(path):
    evaluation = report_lib.read_report(path)
    numbers = [f'Results at step {step}:'] + _eval_rows(evaluation)
  else:
    numbers = [f'No evaluation of step {step} was found (`{os.path.basename(path)}`): run '
               f'`mmjax-evaluate --workdir=DIR --step={step}` and export again to include it.']
  return protocol + [''] + numbers


def render(config: dict, workdir: str, step: int, export_report: dict) -> str:
  """The model card text. `config` is the run's config as a plain dict (its config.json)."""
  m = config['model']
  modalities = export_report['modalities']
  sizes = export_report.get('input_sizes', {})
  kind = ('sparse Mixture-of-Experts' if m.get('moe', {}).get('num_experts') else 'dense')
  parity = export_report.get('parity', {})
  lines = [
      '---',
      'library_name: mmjax',
      'tags: [mmjax, jax, multimodal, contrastive, ' + ', '.join(modalities) + ']',
      '---',
      '',
      f'# mmjax {m["size"]} multimodal encoder (step {step})',
      '',
      f'One {kind} Transformer encoder shared by {", ".join(modalities)}, trained with '
      'alternating gradient descent (one task per step) by mmjax. Each modality is embedded, '
      'encoded, pooled and projected into one L2-normalised space of '
      f'{m["embed_dim"]} dimensions. Encoder: {m["num_layers"]} layers, width {m["width"]}, '
      f'{m["num_heads"]} heads, MLP {m["mlp_dim"]}, {m["pooling"]} pooling.',
      '',
      '## Files',
      '',
      '- `model.safetensors`: the parameters, flat names such as '
      '`encoder.block_0.attn.qkv.kernel` (the nested dict keys joined by `.`), '
      f'stored as {export_report.get("dtype", "float32")}.',
      '- `config.json`: the training config; `model` describes the architecture, `tasks` the '
      'input sizes.',
      '- `tokenizer.model`: the SentencePiece model for text inputs.' if export_report.get(
          'tokenizer') else '- no tokenizer was exported with this model.',
      '- `export_report.json`: what was exported and the parity check against the checkpoint.',
      '',
      '## Training data',
      '',
      f'Trained for {step} steps (of {config["total_steps"]} configured), seed '
      f'{setting(config, "seed")}, on:',
      '',
      *_task_rows(config),
      '',
      f'Input sizes: {", ".join(f"{k} {v}" for k, v in sorted(sizes.items()))}.',
      '',
      '## Evaluation',
      '',
      *_evaluation_part(config, workdir, step),
      '',
      '## Intended use',
      '',
      'Research on multimodal representation learning: zero-shot classification and '
      'cross-modal retrieval between the trained modalities and text, and frozen features '
      'for probes. The model only knows its training data; it is not meant for decisions '
      'about people, and its numbers on other data are unknown until measured.',
      '',
      '## Loading without mmjax',
      '',
      f'`{LOADER}` computes embeddings from this folder with numpy and jax alone (it imports '
      'nothing of mmjax). It ships with mmjax: `examples/` in the repository, the module '
      '`mmjax.examples` in the installed package:',
      '',
      '```',
      f'python -m mmjax.examples.{LOADER[:-3]} THIS_FOLDER --inputs=inputs.npz '
      '--out=embeddings.npz',
      '```',
      '',
      f'Exported embeddings match the checkpoint (parity: {"passed" if parity.get("pass") else "see export_report.json"}).',
  ]
  return '\n'.join(lines) + '\n'


def write(path: str, config: dict, workdir: str, step: int, export_report: dict) -> None:
  with open(path, 'w') as f:
    f.write(render(config, workdir, step, export_report))
