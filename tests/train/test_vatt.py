"""configs/vatt.py trains end to end (MIL-NCE over several captions, video-audio NCE, raw audio,
DropToken) on 8 devices, and evaluation during training compiles once for the whole run."""

import json
import os

import jax
import numpy as np

from mmjax_testing import ROOT
from mmjax import config as config_lib
from mmjax.evaluate import one_model as runner
from mmjax.train import loop

SMALL = ('--config.model.num_layers=1', '--config.total_steps=4', '--config.log_every=1',
         '--config.checkpoint_every=4', '--config.eval_every=2', '--config.data.threads=1',
         '--config.tasks.video_audio.batch_size=8', '--config.tasks.video_text.batch_size=8',
         '--config.agd.mode=round_robin')


def test_vatt_trains_mil_nce_and_evaluation_compiles_once(tmp_path, monkeypatch):
  compiles = []  # traces and compilations (a persistent-cache hit still traces)
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, secs, **kw: compiles.append(name) if name in (
          '/jax/core/compile/jaxpr_trace_duration',
          '/jax/core/compile/backend_compile_duration') else None)
  config = config_lib.load_config(os.path.join(ROOT, 'configs/vatt.py'), list(SMALL))
  task = config.tasks.video_text
  assert (task.mil_nce, task.text_instances, task.drop_token) == ('video-text', 3, 0.5)
  assert config.model.audio.features == 'waveform'
  per_eval = []
  real = runner.evaluate_params

  def counted(*args, **kwargs):
    before = len(compiles)
    out = real(*args, **kwargs)
    per_eval.append(len(compiles) - before)
    return out

  monkeypatch.setattr(runner, 'evaluate_params', counted)
  loop.train(config, str(tmp_path), evaluate=runner.evaluate_params)
  rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  train = [r for r in rows if 'loss' in r]
  assert [r['task'] for r in train] == ['video_audio', 'video_text'] * 2
  for r in train:
    key = 'mil_nce/video_text' if r['task'] == 'video_text' else 'nce/video_audio'
    assert np.isfinite(r[key]) and r['loss'] == r[key] and r['nonfinite'] == 0
  evals = [r for r in rows if 'eval/zero_shot/digits/video/top1' in r]
  assert [r['step'] for r in evals] == [2, 4]
  assert len(per_eval) == 2 and per_eval[0] > 0
  assert per_eval[1] == 0, f'the second evaluation compiled {per_eval[1]} programs again'
