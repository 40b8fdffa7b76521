"""Where training metrics go: `workdir/metrics.jsonl` (one JSON object per logged step) and
TensorBoard event files in `workdir/tensorboard/`. Only process 0 writes. The log is only ever
appended to: a resumed run writes the steps it redoes again, and readers (`read_metrics`,
`last_rows`) take the last row of each step.

Object stores cannot append (an append rewrites the object: O(file) per line), so on `gs://`
lines are buffered and written as segment objects `metrics.jsonl.parts/<time>-<pid>.jsonl`
(O(lines written)) at every checkpoint (`flush`), at most `flush_every` seconds apart, and at
the end. The log is `metrics.jsonl` followed by its segments in name order (`metrics_lines`), which
every reader uses; a local workdir appends to `metrics.jsonl` itself.
"""

from __future__ import annotations

import json
import math
import os
import time

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


PARTS_SUFFIX = '.parts'  # `metrics.jsonl.parts/`: the segments written on object stores
SEGMENT_RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds before each further try of a segment write


def metrics_exist(path: str) -> bool:
  """Whether the log `path` (a `metrics.jsonl`) or any of its segments exists."""
  return paths.exists(path) or paths.exists(path + PARTS_SUFFIX)


def metrics_lines(path: str) -> list[str]:
  """The non-empty lines of the log `path` (a `metrics.jsonl`, any file system), then of its
  segments in write order; [] when there is none."""
  texts = [paths.read_text(path)] if paths.exists(path) else []
  parts = path + PARTS_SUFFIX
  if paths.exists(parts):
    texts += [paths.read_text(paths.join(parts, n)) for n in paths.listdir(parts)
              if n.endswith('.jsonl')]
  return [line for text in texts for line in text.splitlines() if line.strip()]


def read_metrics(workdir: str) -> list[dict]:
  """The rows of `workdir/metrics.jsonl` (and its segments) that count (see `last_rows`)."""
  return last_rows([json.loads(line) for line in
                    metrics_lines(paths.join(workdir, 'metrics.jsonl'))])


class MetricsWriter:
  """Appends rows to metrics.jsonl and scalars to TensorBoard (process 0 only)."""

  def __init__(self, workdir: str, *, resume_step: int = 0, flush_every: float = 60.0,
               tensorboard: bool = True):
    self.active = jax.process_index() == 0
    self.path = paths.join(workdir, 'metrics.jsonl')
    self._tb = None
    self._segmented = paths.is_remote(workdir)  # object stores: buffered, written as segments
    self._buffer: list[str] = []
    self._flush_every, self._flushed = flush_every, time.monotonic()
    if not self.active or not tensorboard:
      return
    # Never rewritten: a resumed run appends, and readers take each step's last row.
    del resume_step
    from tensorboardX import SummaryWriter  # lazy: heavy (protobuf); process 0 only
    self._tb = SummaryWriter(paths.join(workdir, 'tensorboard'))

  def write(self, step: int, row: dict) -> None:
    if not self.active:
      return
    row = {'step': int(step), **{k: _plain(v) for k, v in row.items()}}
    if self._segmented:
      self._buffer.append(json.dumps(row) + '\n')
      if time.monotonic() - self._flushed >= self._flush_every:
        self._write_segment()
    else:
      paths.append_text(self.path, json.dumps(row) + '\n')
    for k, v in row.items():
      if (self._tb is not None and k != 'step' and isinstance(v, (int, float))
          and not isinstance(v, bool)):
        self._tb.add_scalar(k, v, step)

  def _write_segment(self) -> None:
    """Writes the buffered lines as one new segment object (retried on transient errors)."""
    self._flushed = time.monotonic()
    if not self._buffer:
      return
    name = paths.join(self.path + PARTS_SUFFIX, f'{time.time_ns():020d}-{os.getpid()}.jsonl')
    for attempt in range(len(SEGMENT_RETRY_DELAYS) + 1):
      try:
        paths.write_text(name, ''.join(self._buffer))
        break
      except OSError:
        if attempt == len(SEGMENT_RETRY_DELAYS):
          raise
        time.sleep(SEGMENT_RETRY_DELAYS[attempt])
    self._buffer = []

  def flush(self) -> None:
    """Makes every written row readable (the loop calls it at each checkpoint)."""
    if not self.active:
      return
    self._write_segment()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self.active:
      self._write_segment()
    if self._tb is not None:
      self._tb.close()

  def write_config(self, config) -> None:
    """The config as text and hyperparameters in TensorBoard (tensorboard_config.py)."""
    if self._tb is not None:
      tensorboard_config.write(self._tb, config)
