"""Figures: zero-shot confusion matrices (training curves are `mmjax.train.curves`).

Uses matplotlib's object API with the Agg canvas (`Figure.savefig`), never pyplot, so no global
backend state is touched and it runs headless.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure



def safe_name(name: str) -> str:
  """A file-name-safe version of `name` (dataset names may hold '/' or ':')."""
  return re.sub(r'[^A-Za-z0-9._-]+', '_', str(name)).strip('_') or 'unnamed'


def confusion_path(workdir: str, dataset: str, modality: str, step: int) -> str:
  return os.path.join(workdir, 'plots',
                      f'confusion_{safe_name(dataset)}_{safe_name(modality)}_step_{int(step)}.png')


def plot_confusion(matrix, class_names: Sequence[str], path: str, title: str = '') -> str:
  """Saves a row-normalised confusion matrix `[classes, classes]` (rows = true) with counts."""
  matrix = np.asarray(matrix)
  c = matrix.shape[0]
  rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  size = min(max(4.0, 0.45 * c + 2.0), 24.0)
  fig = Figure(figsize=(size, size))
  ax = fig.add_subplot()
  im = ax.imshow(rates, vmin=0.0, vmax=1.0, cmap='Blues')
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='fraction of true class')
  ticks = np.arange(c)
  labels = [str(n) for n in class_names] if len(class_names) == c else [str(i) for i in ticks]
  labels = [n if len(n) <= 24 else n[:23] + '…' for n in labels]   # sentences as class names
  ax.set_xticks(ticks, labels, rotation=90 if c > 10 else 0)
  ax.set_yticks(ticks, labels)
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  if c <= 30:
    for i in range(c):
      for j in range(c):
        if matrix[i, j]:
          ax.text(j, i, str(int(matrix[i, j])), ha='center', va='center', fontsize=7,
                  color='white' if rates[i, j] > 0.5 else 'black')
  ax.set_title(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=100)
  return path
