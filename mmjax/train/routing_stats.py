"""Modality-aware MoE routing statistics: flat log rows and layer x expert load heatmaps.

Input is the train step's `metrics['moe']`: `{modality: {'layer_<i>': {stat: value}}}` with
scalar stats (`load_balancing_loss`, `router_z_loss`, `router_entropy`, `dropped_fraction`) and
`expert_load [experts]`. Plots use matplotlib's object API with the Agg canvas (no pyplot).
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from mmjax import paths as path_layer


def _layer_number(name: str) -> int:
  found = re.search(r'(\d+)$', name)
  return int(found.group(1)) if found else -1


def _layers(per_modality: Mapping) -> list[str]:
  return sorted(per_modality, key=lambda n: (_layer_number(n), n))


def routing_rows(moe_metrics: Mapping) -> dict[str, float]:
  """`{'moe/<modality>/layer_<i>/<stat>': float}`; `expert_load` becomes one row per expert
  (`.../expert_load/<e>`) plus `.../expert_load_max`, the busiest expert's load x experts
  (1.0 = perfectly balanced); other per-expert stats one row per expert (`.../<stat>/<e>`)."""
  rows = {}
  for modality in sorted(moe_metrics):
    for layer in _layers(moe_metrics[modality]):
      prefix = f'moe/{modality}/{layer}'
      for stat, value in sorted(moe_metrics[modality][layer].items()):
        v = np.asarray(value, np.float64)
        if v.ndim == 0:
          rows[f'{prefix}/{stat}'] = float(v)
        elif stat == 'expert_load':
          for e, load in enumerate(v.reshape(-1)):
            rows[f'{prefix}/expert_load/{e}'] = float(load)
          rows[f'{prefix}/expert_load_max'] = float(v.max() * v.size)
        elif v.ndim == 1:                          # per-expert stats: expert_drop, capacity_use
          for e, item in enumerate(v):
            rows[f'{prefix}/{stat}/{e}'] = float(item)
  return rows


def load_matrix(per_modality: Mapping) -> tuple[list[str], np.ndarray]:
  """Layer names and their `expert_load` stacked as `[layers, experts]`."""
  layers = [n for n in _layers(per_modality) if 'expert_load' in per_modality[n]]
  if not layers:
    return [], np.zeros((0, 0))
  return layers, np.stack([np.asarray(per_modality[n]['expert_load'], np.float64).reshape(-1)
                           for n in layers])


def _average(by_step: Mapping) -> dict:
  """Mean expert load per (modality, layer) over several steps' `metrics['moe']`."""
  out: dict = {}
  for metrics in by_step.values():
    for modality, layers in metrics.items():
      for layer, stats in layers.items():
        if 'expert_load' in stats:
          out.setdefault(modality, {}).setdefault(layer, []).append(
              np.asarray(stats['expert_load'], np.float64))
  return {m: {n: {'expert_load': np.mean(v, axis=0)} for n, v in layers.items()}
          for m, layers in out.items()}


def plot_routing_heatmaps(moe_metrics_by_step_or_last: Mapping, out_dir: str, step: int
                          ) -> list[str]:
  """Saves one `[layers, experts]` load heatmap per modality to
  `out_dir/plots/moe_load_<modality>_step_<step>.png`; returns the paths.

  Takes one step's `metrics['moe']`, or `{step: metrics['moe']}` for several steps (averaged).
  """
  metrics = moe_metrics_by_step_or_last
  if metrics and all(isinstance(k, (int, np.integer)) for k in metrics):
    metrics = _average(metrics)
  folder = path_layer.join(out_dir, 'plots')
  path_layer.makedirs(folder)
  paths = []
  for modality in sorted(metrics):
    layers, load = load_matrix(metrics[modality])
    if not layers:
      continue
    fig = Figure(figsize=(1.2 + 0.45 * load.shape[1], 1.0 + 0.4 * len(layers)))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(load, aspect='auto', cmap='viridis', vmin=0.0,
                      vmax=max(float(load.max()), 1e-9))
    ax.set_xticks(range(load.shape[1]))
    ax.set_yticks(range(len(layers)), labels=layers)
    ax.set_xlabel('expert')
    ax.set_title(f'{modality}: fraction of routed tokens, step {int(step)}')
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    safe = re.sub(r'[^A-Za-z0-9._-]+', '_', modality)
    path = path_layer.join(folder, f'moe_load_{safe}_step_{int(step)}.png')
    with path_layer.open_file(path, 'wb') as f:
      fig.savefig(f, format='png', dpi=100)
    paths.append(path)
  return paths
