"""Metrics on gs:// (the GCS emulator): appended as segment objects in time independent of the
log's size, read back whole by every reader, plots written through the path layer."""

from __future__ import annotations

import json
import time

from mmjax import paths
from mmjax.sweep import collect
from mmjax.train import curves, metrics_writer
from gcs_testing import gcs  # noqa: F401 - the emulator fixture


def _row(step: int) -> dict:
  return {'task': 'image_text', 'loss': 1.0 / step, 'grad_norm': 0.5, 'learning_rate': 1e-3}


def _append_1000(workdir: str, first: int) -> float:
  # TensorBoard's own gs:// writer is not what is timed here (and, left to the garbage collector,
  # it retries its upload for two minutes once the emulator has stopped).
  writer = metrics_writer.MetricsWriter(workdir, tensorboard=False)
  t0 = time.perf_counter()
  for step in range(first, first + 1000):
    writer.write(step, _row(step))
    if step % 250 == 0:
      writer.flush()    # as the loop does at each checkpoint
  writer.close()
  return time.perf_counter() - t0


def test_1000_lines_append_in_time_independent_of_the_log_size(tmp_path, gcs):  # noqa: F811
  times = {}
  for mb in (0, 8):
    workdir = f'gs://bucket/metrics/{tmp_path.name}-{mb}'
    existing = 0
    if mb:
      line = json.dumps({'step': 0, **_row(1), 'pad': 'x' * 900}) + '\n'
      existing = mb * (1 << 20) // len(line)
      paths.write_text(paths.join(workdir, 'metrics.jsonl'), ''.join(
          line.replace('"step": 0', f'"step": {s}') for s in range(1, existing + 1)))
    times[mb] = _append_1000(workdir, existing + 1)
    rows = metrics_writer.read_metrics(workdir)
    assert [r['step'] for r in rows] == list(range(1, existing + 1001))
    assert rows[-1]['loss'] == 1.0 / (existing + 1000)
  print(f'1000 metrics lines on the GCS emulator: {times[0]:.2f} s with an empty log, '
        f'{times[8]:.2f} s after an 8 MB metrics.jsonl')
  # Segments cost O(lines written): the old read-and-rewrite took ~0.4 s per line at 8 MB.
  assert times[8] < 2 * times[0] + 1.0 and times[8] < 20


def test_readers_and_plots_go_through_the_path_layer(tmp_path, gcs):  # noqa: F811
  workdir = f'gs://bucket/metrics/{tmp_path.name}-readers'
  paths.write_text(paths.join(workdir, 'metrics.jsonl'),
                   ''.join(json.dumps({'step': s, **_row(s)}) + '\n' for s in (1, 2)))
  writer = metrics_writer.MetricsWriter(workdir, tensorboard=False)
  writer.write(2, _row(4))            # a resumed run writes step 2 again: the last row counts
  writer.flush()
  writer.write(3, _row(3))
  writer.close()
  assert len(paths.listdir(paths.join(workdir, 'metrics.jsonl.parts'))) == 2
  records = curves.read_metrics(paths.join(workdir, 'metrics.jsonl'))
  assert [(r['step'], r['loss']) for r in records] == [(1, 1.0), (2, 0.25), (3, 1 / 3)]
  assert [(r['step'], r['loss']) for r in collect.read_rows(workdir)] == [(1, 1.0), (2, 0.25),
                                                                      (3, 1 / 3)]
  written = curves.plot_workdir(workdir)
  assert paths.join(workdir, 'plots', 'loss.png') in written
  assert paths.open_file(paths.join(workdir, 'plots', 'loss.png'), 'rb').read(8) == \
      b'\x89PNG\r\n\x1a\n'
