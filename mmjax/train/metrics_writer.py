"""Where training metrics go: `workdir/metrics.jsonl` (one JSON object per logged step) and
TensorBoard event files in `workdir/tensorboard/`. Only process 0 writes."""

from __future__ import annotations

import json
import math
import jax
import numpy as np

from mmjax import paths


def _plain(value):
  if isinstance(value, (np.generic, np.ndarray)):
    value = value.item() if np.ndim(value) == 0 else value.tolist()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def read_metrics(workdir: str) -> list[dict]:
  path = paths.join(workdir, 'metrics.jsonl')
  if not paths.exists(path):
    return []
  return [json.loads(line) for line in paths.read_text(path).splitlines() if line.strip()]


class MetricsWriter:
  """Appends rows to metrics.jsonl and scalars to TensorBoard (process 0 only)."""

  def __init__(self, workdir: str, *, resume_step: int = 0):
    self.active = jax.process_index() == 0
    self.path = paths.join(workdir, 'metrics.jsonl')
    self._tb = None
    if not self.active:
      return
    # Rows past the restored step will be written again by this run: replace them, keep the rest.
    rows = [r for r in read_metrics(workdir) if r.get('step', 0) <= resume_step]
    paths.write_text(self.path, ''.join(json.dumps(r) + '\n' for r in rows))
    from tensorboardX import SummaryWriter
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
