"""Where training metrics go: `workdir/metrics.jsonl` (one JSON object per logged step) and
TensorBoard event files in `workdir/tensorboard/`. Only process 0 writes. The file is only ever
appended to: a resumed run writes the steps it redoes again, and readers (`read_metrics`,
`last_rows`) take the last row of each step."""

from __future__ import annotations

import json
import math
import jax
import numpy as np

from mmjax.train import tensorboard_config
from mmjax import paths


def _plain(value):
  if isinstance(value, (np.generic, np.ndarray)):
    value = value.item() if np.ndim(value) == 0 else value.tolist()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def last_rows(records: list[dict]) -> list[dict]:
  """One row per (step, kind), the last written, ordered by step (training row first): a
  resumed run appends rows for the steps it redoes, so the newest row of a step is the one that
  counts. A row's kind is training (it has a `loss`) or evaluation."""
  latest = {}
  for r in records:
    latest[(r.get('step', 0), 'loss' not in r)] = r
  return [latest[k] for k in sorted(latest)]


def read_metrics(workdir: str) -> list[dict]:
  """The rows of `workdir/metrics.jsonl` that count (see `last_rows`)."""
  path = paths.join(workdir, 'metrics.jsonl')
  if not paths.exists(path):
    return []
  return last_rows([json.loads(line) for line in paths.read_text(path).splitlines()
                    if line.strip()])


class MetricsWriter:
  """Appends rows to metrics.jsonl and scalars to TensorBoard (process 0 only)."""

  def __init__(self, workdir: str, *, resume_step: int = 0):
    self.active = jax.process_index() == 0
    self.path = paths.join(workdir, 'metrics.jsonl')
    self._tb = None
    if not self.active:
      return
    # Never rewritten: a resumed run appends, and readers take each step's last row.
    del resume_step
    from tensorboardX import SummaryWriter  # lazy: heavy (protobuf); process 0 only
    self._tb = SummaryWriter(paths.join(workdir, 'tensorboard'))

  def write(self, step: int, row: dict) -> None:
    if not self.active:
      return
    row = {'step': int(step), **{k: _plain(v) for k, v in row.items()}}
    paths.append_text(self.path, json.dumps(row) + '\n')
    for k, v in row.items():
      if k != 'step' and isinstance(v, (int, float)) and not isinstance(v, bool):
        self._tb.add_scalar(k, v, step)

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()

  def write_config(self, config) -> None:
    """The config as text and hyperparameters in TensorBoard (tensorboard_config.py)."""
    if self._tb is not None:
      tensorboard_config.write(self._tb, config)
