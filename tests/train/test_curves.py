"""Training curves: per-task window means win over the logged step's value, metric names may
hold '/', and all-zero series are not drawn."""

import os

from mmjax.train import curves
from mmjax.train.task_means import TaskWindowMeans


def test_window_means_by_hand():
  means = TaskWindowMeans()
  means.add('a', {'loss': 1.0, 'accuracy/image': 0.5, 'learning_rate': 1e-3})
  means.add('b', {'loss': 4.0})
  means.add('a', {'loss': 3.0, 'accuracy/image': 1.0, 'learning_rate': 2e-3})
  assert means.rows() == {'tasks/a/accuracy/image': 0.75, 'tasks/a/loss': 2.0,
                          'tasks/a/window_steps': 2, 'tasks/b/loss': 4.0,
                          'tasks/b/window_steps': 1}


def test_series_prefer_window_means_and_skip_all_zero(tmp_path):
  records = [
      {'step': 2, 'task': 'a', 'loss': 9.0, 'accuracy/image': 0.9, 'moe_aux': 0.0,
       'nonfinite': 0.0, 'learning_rate': 0.1, 'tasks/a/loss': 2.0,
       'tasks/a/accuracy/image': 0.5, 'tasks/b/loss': 3.0, 'tasks/a/nonfinite': 0.0},
      {'step': 4, 'task': 'b', 'loss': 7.0, 'moe_aux': 0.0, 'nonfinite': 0.0,
       'learning_rate': 0.2, 'tasks/b/loss': 1.5},
  ]
  series = curves._series(records)
  assert series['loss'] == {'a': ([2], [2.0]), 'b': ([2, 4], [3.0, 1.5])}
  assert series['accuracy/image'] == {'a': ([2], [0.5])}
  assert series['learning_rate'] == {'all': ([2, 4], [0.1, 0.2])}
  names = sorted(os.path.basename(p) for p in curves.plot_metrics(records, str(tmp_path)))
  assert names == ['accuracy_image.png', 'learning_rate.png', 'loss.png']


def test_checkpoint_plots_first_then_throttled_then_final(tmp_path):
  plots = curves.CheckpointPlots(str(tmp_path), min_seconds=1e9)
  assert plots.at_checkpoint(final=False) == []  # no metrics.jsonl yet: nothing to draw
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1, "task": "a", "loss": 2.0}\n')
  assert [os.path.basename(p) for p in plots.at_checkpoint(final=False)] == ['loss.png']
  assert plots.at_checkpoint(final=False) == []  # within min_seconds of the last drawing
  assert [os.path.basename(p) for p in plots.at_checkpoint(final=True)] == ['loss.png']
