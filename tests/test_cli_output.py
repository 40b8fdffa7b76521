"""What the command-line tools print: known noise filtered (real warnings kept), JAX options on
the command line, plain progress lines when stdout is not a terminal, the end-of-run summary;
and, end to end with output redirected to a file, train/evaluate/export logs, per-task window
means, plots at each checkpoint, the config in TensorBoard and a profiler trace."""

import io
import json
import logging
import os
import struct
import subprocess
import sys

import jax
import pytest
from absl import logging as absl_logging

from mmjax import cli, jax_flags, log_filters
from mmjax.config import ConfigError
from mmjax.train import progress, run_summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Records(logging.Handler):
  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_known_noise_is_dropped_and_real_warnings_pass():
  log_filters.filter_known_noise()
  handler = _Records()
  logger = absl_logging.get_absl_logger()
  logger.addHandler(handler)
  try:
    absl_logging.warning('Type handler registry type "%s" overriding %s', 'X', 'jax.Array')
    absl_logging.warning('CheckpointManagerOptions.read_only=True, setting max_to_keep=None.')
    absl_logging.warning('Given directory is read only=/tmp/x')
    absl_logging.warning('checkpoint 7 is damaged')
  finally:
    logger.removeHandler(handler)
  assert handler.messages == ['checkpoint 7 is damaged']


def test_jax_options_on_the_command_line():
  import argparse
  parser = argparse.ArgumentParser()
  parser.add_argument('--workdir')
  before = jax.config.jax_debug_nans
  try:
    args, overrides = cli.parse(parser, ['--workdir=W', '--jax_debug_nans',
                                         '--config.total_steps=3'])
    assert jax.config.jax_debug_nans is True
    assert args.workdir == 'W' and overrides == [('total_steps', '3')]
    cli.parse(parser, ['--jax_debug_nans=false'])
    assert jax.config.jax_debug_nans is False
  finally:
    jax.config.update('jax_debug_nans', before)
  with pytest.raises(ConfigError, match='--jax_debug_nans'):
    jax_flags.apply_jax_flags([('jax_debug_nan', None)])
  with pytest.raises(ConfigError, match='true or false'):
    jax_flags.apply_jax_flags([('jax_log_compiles', 'maybe')])


def test_plain_progress_lines_when_not_a_terminal():
  out = io.StringIO()  # not a tty
  bar = progress.Progress(total=100, initial=0, enabled=True, stream=out)
  bar.step('image_text', 2.0)
  bar.logged(20, {'task': 'image_text', 'loss': 2.03125, 'examples_per_sec': 640.0,
                  'step_time': 0.5})
  bar.close()
  assert out.getvalue() == ('step 20/100  task image_text  loss 2.0312  640.0 examples/s  '
                            'ETA 0:00:40\n')  # 80 steps left x 0.5 s


def test_summary_by_hand(tmp_path):
  rows = [{'step': 2, 'task': 'a', 'loss': 3.0, 'tasks/a/loss': 3.0, 'tasks/b/loss': 5.0},
          {'step': 4, 'task': 'b', 'loss': 4.0, 'tasks/a/loss': 2.5, 'tasks/b/loss': 5.5,
           'tasks/a/accuracy/image': 0.5},
          {'step': 4, 'eval/zero_shot/d/image/top1': 0.25},
          {'step': 6, 'task': 'a', 'loss': 2.75, 'tasks/a/loss': 2.75}]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  (tmp_path / 'checkpoints' / '6').mkdir(parents=True)
  text = run_summary.summarize(str(tmp_path), 10, 6, 3725.0, {'goodput': 0.9})
  assert 'steps        6 of 10, wall time 1:02:05' in text
  assert 'goodput      goodput 0.900' in text
  assert 'last         a loss 2.7500, b loss 5.5000' in text
  assert 'best         a loss 2.5000 (step 4), b loss 5.0000 (step 2)' in text
  assert 'eval/zero_shot/d/image/top1 last 0.2500 (step 4), best 0.2500 (step 4)' in text
  assert '(latest step 6)' in text


def _tensorboard_tags(folder) -> set:
  """Summary tags and plugin names in the event files of `folder` (TFRecord framing read by
  hand: length, crc, Event proto, crc)."""
  from tensorboardX.proto import event_pb2
  tags = set()
  for name in os.listdir(folder):
    if not name.startswith('events.out.tfevents'):
      continue
    data = open(os.path.join(folder, name), 'rb').read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack('<Q', data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4
      for v in event.summary.value:
        tags.add(v.tag)
        if v.metadata.plugin_data.plugin_name:
          tags.add('plugin:' + v.metadata.plugin_data.plugin_name)
  return tags


@pytest.mark.slow
def test_redirected_logs_metrics_plots_tensorboard_and_profile(tmp_path):
  workdir = tmp_path / 'run'
  env = {**os.environ, 'PYTHONPATH': ROOT, 'JAX_PLATFORMS': 'cpu'}

  def run(log_name, *args):
    with open(tmp_path / log_name, 'w') as log:  # stdout and stderr to a file, as under SLURM
      rc = subprocess.run([sys.executable, '-m', *args], cwd=tmp_path, env=env, stdout=log,
                          stderr=subprocess.STDOUT, timeout=900).returncode
    text = (tmp_path / log_name).read_text()
    assert rc == 0, text[-3000:]
    for line in text.splitlines():
      assert not line.startswith(('WARNING absl', 'WARNING:absl', 'W1', 'WARNING orbax')), line
    return text

  train = run('train.log', 'mmjax.train', '--config=demo', f'--workdir={workdir}',
              '--config.model.num_layers=1', '--config.total_steps=6', '--config.log_every=2',
              '--config.checkpoint_every=3', '--config.data.threads=1',
              '--config.profile.start_step=2', '--config.profile.num_steps=2',
              '--config.evaluation.datasets.digits.linear_probe=False',  # its pass: tested elsewhere
              '--jax_log_compiles=false')
  lines = [l for l in train.splitlines() if l.startswith('step ')]
  assert [l.split()[1] for l in lines] == ['2/6', '4/6', '6/6']
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  rows = [r for r in rows if 'loss' in r]  # training rows (the run's last row is its goodput)
  for line, row in zip(lines, rows):
    assert f"loss {row['loss']:.4f}" in line and 'examples/s' in line and 'ETA' in line
  assert '\r' not in train  # no progress bar redraws in a file
  assert '== run summary' in train and 'steps        6 of 6' in train
  # Every row carries each task that ran in its window, as the mean over the window.
  for row in rows:
    window_tasks = [k.split('/')[1] for k in row if k.endswith('/window_steps')]
    assert row['task'] in window_tasks
    assert sum(row[f'tasks/{t}/window_steps'] for t in window_tasks) == 2
  plots = sorted(os.listdir(workdir / 'plots'))  # written at the checkpoints by the loop
  assert 'loss.png' in plots and 'accuracy_image.png' in plots
  assert not any(p.startswith(('moe_', 'nonfinite')) for p in plots)  # all zero: not drawn
  tags = _tensorboard_tags(workdir / 'tensorboard')
  assert {'config/text_summary', 'plugin:hparams', 'loss'} <= tags, tags
  traces = [f for _, _, fs in os.walk(workdir / 'tensorboard' / 'plugins' / 'profile')
            for f in fs if f.endswith('.xplane.pb')]
  assert traces, 'no profiler trace written'

  evaluate = run('eval.log', 'mmjax.evaluate', f'--workdir={workdir}')
  assert 'zero shot' in evaluate and 'top1' in evaluate
  export = run('export.log', 'mmjax.export', f'--workdir={workdir}',
               f'--output={tmp_path / "export"}', '--format=safetensors')
  assert 'safetensors' in export and 'report:' in export
