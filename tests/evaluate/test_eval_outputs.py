"""Plots, report JSON/table and the tools.plot_metrics CLI produce their files."""

import json
import os

import numpy as np

from mmjax.evaluate import plots, report
from mmjax.train import curves
from tools import plot_metrics


def _write_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    for step in range(1, 7):
      task = 'image_text' if step % 2 else 'video_text'
      f.write(json.dumps({'step': step, 'task': task, 'loss': 3.0 / step, 'learning_rate': 1e-3 * step,
                          'examples_per_sec': 100.0 + step, f'tasks/{task}/loss': 3.0 / step,
                          'tasks/audio_text/loss': 2.0}) + '\n')
    f.write('{"step": 7, "task": "image_te')  # a run still writing its last line


def test_confusion_plot(tmp_path):
  path = plots.confusion_path(str(tmp_path), 'embedded/mnist', 'image', 12)
  assert path.endswith(os.path.join('plots', 'confusion_embedded_mnist_image_step_12.png'))
  plots.plot_confusion(np.array([[3, 1], [0, 4]]), ['zero', 'one'], path, 'mnist image')
  assert os.path.getsize(path) > 1000


def test_metric_curves_per_task(tmp_path):
  _write_metrics(str(tmp_path))
  records = curves.read_metrics(str(tmp_path / 'metrics.jsonl'))
  assert len(records) == 6
  series = curves._series(records)
  assert set(series) == {'loss', 'learning_rate', 'examples_per_sec'}
  assert set(series['loss']) == {'image_text', 'video_text', 'audio_text'}
  assert series['loss']['image_text'] == ([1, 3, 5], [3.0, 1.0, 0.6])  # duplicates kept once
  assert set(series['learning_rate']) == {'all'}
  paths = curves.plot_workdir(str(tmp_path))
  names = sorted(os.path.basename(p) for p in paths)
  assert names == ['examples_per_sec.png', 'learning_rate.png', 'loss.png']
  assert all(os.path.getsize(p) > 1000 for p in paths)


def test_plot_metrics_cli(tmp_path, capsys):
  assert plot_metrics.main([f'--workdir={tmp_path}']) == 2  # bad input: exit 2
  assert 'no metrics file' in capsys.readouterr().err
  _write_metrics(str(tmp_path))
  assert plot_metrics.main([f'--workdir={tmp_path}']) == 0
  assert os.path.exists(tmp_path / 'plots' / 'loss.png')


def test_report_json_and_table(tmp_path):
  rep = report.build_report(
      np.int64(40),
      zero_shot={'mnist/image': {'top1': np.float32(0.5), 'top5': 1.0}},
      retrieval={'mnist/image_to_text': {'R@1': 0.25, 'R@5': 0.5, 'R@10': 1.0,
                                         'median_rank': 3.0, 'mean_rank': 4.5}},
      linear_probe={'mnist/image': {'top1': 0.75}},
      preprocessing={'templates': {'image': ['a {}.']}, 'max_length': 16, 'clips': 1})
  path = report.write_report(rep, report.eval_dir(str(tmp_path)))
  assert path == os.path.join(str(tmp_path), 'eval', 'step_40.json')
  assert path == report.report_path(str(tmp_path), 40)
  loaded = report.read_report(path)
  assert loaded == rep and loaded['zero_shot']['mnist/image']['top1'] == 0.5
  assert set(loaded) == {'step', 'zero_shot', 'retrieval', 'linear_probe', 'preprocessing'}
  table = report.format_table(rep)
  assert 'step 40' in table and 'top1  50.00' in table and 'median_rank 3.0' in table
  assert 'linear probe' in table
