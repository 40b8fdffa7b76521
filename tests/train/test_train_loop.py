"""The training loop end to end on mmjax_digits: compile-ahead, logs, resume, per-task metrics."""

import json

import jax
import pytest

from mmjax.core.tasks import task_signatures
from mmjax.train import loop, step as step_lib
from mmjax_testing import demo_config

TINY = ('--config.model.num_layers=1', '--config.total_steps=6', '--config.log_every=1',
        '--config.checkpoint_every=3', '--config.data.threads=1',
        '--config.tasks.image_text.batch_size=8', '--config.tasks.video_text.batch_size=8',
        '--config.tasks.audio_text.batch_size=8', '--config.tasks.image_classify.batch_size=8')


@pytest.fixture(scope='module')
def compile_log():
  events = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, secs, **kw: events.append(name)
      if name == '/jax/core/compile/backend_compile_duration' else None)
  return events


def test_compiles_once_per_signature_and_never_in_the_loop(tmp_path, monkeypatch, compile_log):
  config = demo_config(*TINY)
  marks = {}
  real_compile, real_scalars = step_lib.compile_train_steps, loop._scalars

  def counted_compile(*args, **kwargs):
    before = len(compile_log)
    out = real_compile(*args, **kwargs)
    marks['ahead'] = len(compile_log) - before
    return out

  def counted_scalars(metrics):
    marks.setdefault('first_step', len(compile_log))
    marks['last_step'] = len(compile_log)
    return real_scalars(metrics)

  monkeypatch.setattr(loop.step_lib, 'compile_train_steps', counted_compile)
  monkeypatch.setattr(loop, '_scalars', counted_scalars)
  loop.train(config, str(tmp_path))
  assert marks['ahead'] == len(task_signatures(config)) == 4
  assert marks['last_step'] == marks['first_step'], 'something compiled inside the loop'

  rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert rows[-1]['step'] == 6 and 0 < rows[-1]['goodput/fraction'] < 1  # the run's goodput
  rows = [r for r in rows if 'loss' in r]
  assert [r['step'] for r in rows] == list(range(1, 7))
  for r in rows:
    assert {'step', 'task', 'loss', 'learning_rate', 'examples_per_sec'} <= set(r)
  last = rows[-1]
  steps = sum(last.get(f'tasks/{t.name}/steps', 0) for t in task_signatures(config))
  assert steps == 6
  assert json.loads((tmp_path / 'config.json').read_text())['total_steps'] == 6
  assert list((tmp_path / 'tensorboard').iterdir())
  assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit()) == ['3', '6']
