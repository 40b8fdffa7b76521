"""4M task: the Dirichlet split of the input and target budgets, the encoder seeing input tokens
only, the loss on target tokens against numpy, config errors, the train CLI next to contrastive
tasks (and resuming exactly), and equal losses on one device and a data x fsdp x tensor mesh."""

import json
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax import config as config_lib
from mmjax.core.tasks import task_signatures
from mmjax.models.fourm import fourm_outputs
from mmjax.models.fourm_masking import choose_tokens, split_budget
from mmjax.models.model import build_model
from mmjax.train import objectives
from mmjax.evaluate.generate.__main__ import main as generate_main
from mmjax.train.__main__ import main as train_main
from mmjax_testing import ROOT, synthetic_batch, train_steps
from fourm_testing import fourm_config, tiny_args, write_tiny_tokenizers
from run_testing import committed, start, wait_for

MODS = ('image', 'audio', 'text')


@pytest.fixture(scope='module')
def tokenizers(tmp_path_factory):
  return write_tiny_tokenizers(tmp_path_factory.mktemp('tokenizers'))


@pytest.fixture(scope='module')
def setup(tokenizers):
  config = fourm_config(tokenizers)
  model = build_model(config, nnx.Rngs(0))
  task = task_signatures(config)[0]
  return config, model, task, synthetic_batch(task, seed=0, batch_size=8)


def test_budget_split_sums_follows_shares_and_varies():
  key, b, budget = jax.random.key(3), 512, 16
  avail = np.tile([16, 16, 10], (b, 1))
  counts = np.asarray(split_budget(key, jnp.asarray(avail), budget, 1.0))
  shares = np.asarray(jax.random.dirichlet(key, np.ones(3), (b,)))      # the same draw
  np.testing.assert_array_equal(counts.sum(-1), budget)
  assert np.all(counts <= avail) and np.all(counts >= 0)
  room = (shares * budget <= avail - 1).all(-1)                          # nothing was capped
  assert room.mean() > 0.5
  assert np.all(np.abs(counts - shares * budget)[room] < 1.0)            # largest remainder
  assert counts.std(0).min() > 2 and len({tuple(c) for c in counts}) > 100  # of 153 possible
  # A modality with too few tokens passes the rest on; a budget above the total takes all.
  few = np.asarray(split_budget(key, jnp.asarray(np.tile([2, 16, 3], (b, 1))), budget, 1.0))
  np.testing.assert_array_equal(few.sum(-1), budget)
  assert np.all(few <= [2, 16, 3])
  all_ = np.asarray(split_budget(key, jnp.asarray(np.tile([2, 3, 4], (4, 1))), budget, 1.0))
  np.testing.assert_array_equal(all_, np.tile([2, 3, 4], (4, 1)))
  chosen = np.asarray(choose_tokens(key, jnp.asarray(np.tile([1, 0, 1, 1, 0, 1], (b, 1))),
                                    jnp.asarray(np.arange(b) % 5)))
  np.testing.assert_array_equal(chosen.sum(-1), np.minimum(np.arange(b) % 5, 4))
  assert not chosen[:, [1, 4]].any()


def test_model_draws_inputs_then_targets_within_budgets(setup):
  _, model, task, batch = setup
  out, _ = fourm_outputs(model, batch, task, jax.random.key(5))
  ins = np.stack([np.asarray(out['inputs'][m]) .sum(-1) for m in MODS], -1)
  tgs = np.stack([np.asarray(out['target_masks'][m]).sum(-1) for m in MODS], -1)
  avail = np.stack([np.asarray(out['available'][m]).sum(-1) for m in MODS], -1)
  np.testing.assert_array_equal(ins.sum(-1), task.input_tokens)
  np.testing.assert_array_equal(tgs.sum(-1), np.minimum(task.target_tokens, avail.sum(-1) - 16))
  for m in MODS:  # targets are never inputs, both only where a token is real
    i, t, a = (np.asarray(out[k][m]) for k in ('inputs', 'target_masks', 'available'))
    assert not (i & t).any() and not ((i | t) & (1 - a)).any()
  assert len({tuple(r) for r in ins}) > 1                                # shares vary


def test_encoder_sees_input_tokens_only(setup):
  """Rewriting every non-input token leaves the predictions alone; rewriting an input changes
  them."""
  _, model, task, batch = setup
  out, _ = fourm_outputs(model, batch, task, jax.random.key(2))
  fm = model.fourm
  ids, inputs, targets = out['ids'], out['inputs'], out['target_masks']
  rng = np.random.default_rng(0)
  other = {m: jnp.where(inputs[m] > 0, ids[m],
                        jnp.asarray(rng.integers(1, fm.vocab[i], ids[m].shape), jnp.int32))
           for i, m in enumerate(MODS)}
  run = lambda x: fm.forward(model, x, inputs, targets, task.input_tokens, task.target_tokens)[0]
  base, changed = run(ids), run(other)
  np.testing.assert_allclose(changed['logits'], base['logits'], atol=1e-5)
  assert not np.array_equal(changed['targets'], base['targets'])
  first = {m: ids[m] for m in MODS}
  row = int(np.argmax(np.asarray(inputs['image']).sum(-1)))
  col = int(np.argmax(np.asarray(inputs['image'])[row]))
  first['image'] = ids['image'].at[row, col].set((ids['image'][row, col] + 1) % fm.vocab[0])
  assert not np.allclose(run(first)['logits'][row], base['logits'][row], atol=1e-4)


def test_loss_is_the_target_token_cross_entropy(setup):
  config, model, task, batch = setup
  outputs = model(batch, task, rng=jax.random.key(0), train=True)
  loss, parts = objectives.task_loss(model, outputs, batch, task, config)
  o = jax.device_get(outputs['fourm'])
  offsets, vocab = model.fourm.offsets, model.fourm.vocab
  total = 0.0
  for i, m in enumerate(MODS):
    xs, hits = [], []
    for b, t in zip(*np.nonzero((o['mask'] > 0) & (o['modality'] == i))):
      row = o['logits'][b, t, offsets[i]:offsets[i] + vocab[i]].astype(np.float64)
      target = o['targets'][b, t] - offsets[i]
      assert 0 <= target < vocab[i]
      xs.append(np.log(np.exp(row - row.max()).sum()) + row.max() - row[target])
      hits.append(row.argmax() == target)
    np.testing.assert_allclose(float(parts[f'fourm/{m}']), np.mean(xs), rtol=1e-5)
    np.testing.assert_allclose(float(parts[f'accuracy/fourm_{m}']), np.mean(hits), atol=1e-6)
    total += np.mean(xs)
  np.testing.assert_allclose(float(loss), total, rtol=1e-5)


@pytest.mark.parametrize('override,match', [
    ('--config.tasks.fourm.fourm=image,video', 'fourm names'),
    ('--config.tasks.fourm.input_tokens=0', 'input_tokens'),
    ('--config.tasks.fourm.contrast=image-text', 'also sets'),
    ('--config.model.encoder_sharing=per_modality', 'one sequence'),
])
def test_bad_fourm_settings_are_refused(tokenizers, override, match):
  with pytest.raises(config_lib.ConfigError, match=match):
    fourm_config(tokenizers, override)


def test_losses_agree_on_one_device_and_a_mesh(tokenizers):
  config = fourm_config(tokenizers, '--config.optimizer.warmup_steps=1',
                        '--config.tasks.fourm.batch_size=8')
  keys = ('loss', 'fourm/image', 'fourm/audio', 'fourm/text')
  runs = []
  for sizes, n in (({'data': 1}, 1), ({'data': 2, 'fsdp': 2, 'tensor': 2}, 8)):
    abstract, hist, _ = train_steps(config, sizes, n, 2, task_name='fourm')
    runs.append(np.array([[float(m[k]) for k in keys] for m in hist]))
  assert np.all(np.isfinite(runs[0])) and runs[0][1, 0] != runs[0][0, 0]
  np.testing.assert_allclose(runs[1], runs[0], rtol=2e-4)
  head = abstract['params']['fourm']['head']['kernel'].sharding.spec
  assert tuple(head) == ('fsdp', 'tensor')


def _rows(workdir):
  out = {}
  for line in (workdir / 'metrics.jsonl').read_text().splitlines():
    r = json.loads(line)
    if 'loss' in r:
      out[(r['step'], r['task'].split('@')[0])] = r
  return out


def _train_argv(tokenizers, workdir):
  """`configs/fourm.py:agd` for 12 round-robin steps with a checkpoint every 3."""
  return [f'--config={ROOT}/configs/fourm.py:agd', f'--workdir={workdir}',
          '--config.total_steps=12', '--config.log_every=1', '--config.checkpoint_every=3',
          '--config.agd.mode=round_robin', '--config.data.threads=1', *tiny_args(tokenizers),
          *[f'--config.tasks.{t}.batch_size=8' for t in ('fourm', 'image_text', 'audio_text')]]


@pytest.fixture(scope='module')
def trained(tokenizers, tmp_path_factory):
  """`configs/fourm.py:agd` trained through the CLI, uninterrupted: (argv, workdir, rows)."""
  workdir = tmp_path_factory.mktemp('fourm_run')
  argv = _train_argv(tokenizers, workdir)
  assert train_main(argv) in (0, None)
  return argv, workdir, _rows(workdir)


def test_train_cli_next_to_contrastive_tasks_and_exact_resume_after_a_kill(tokenizers, trained,
                                                                           tmp_path):
  """Round robin over the 4M and contrastive tasks; then the same command in a process killed
  (SIGKILL) after checkpoint 3 and run again ends with every step's loss and grad norm equal to
  the uninterrupted run's."""
  _, workdir, first = trained
  assert {t for _, t in first} == {'fourm', 'image_text', 'audio_text'}
  four = next(r for (s, t), r in first.items() if t == 'fourm')
  np.testing.assert_allclose(four['loss'], sum(four[f'fourm/{m}'] for m in MODS), rtol=1e-5)
  saved = json.loads((workdir / 'config.json').read_text())
  assert saved['model']['fourm']['tokenizers']['image'] == tokenizers['image']
  killed = tmp_path / 'killed'
  argv = _train_argv(tokenizers, killed)
  proc = start([sys.executable, '-m', 'mmjax.train', *argv], tmp_path / 'train.log')
  wait_for(lambda: committed(killed, 3), proc, what='checkpoint 3 to be committed')
  proc.send_signal(signal.SIGKILL)
  assert proc.wait(timeout=60) == -signal.SIGKILL
  assert not committed(killed, 12)
  assert train_main(argv) in (0, None)
  again = _rows(killed)
  assert sorted(again) == sorted(first) and max(first)[0] == 12
  for key, row in first.items():
    for k in ('loss', 'grad_norm'):
      assert again[key][k] == row[k], (key, k)


def test_generate_cli_writes_samples_and_measures(trained, capsys):
  _, workdir, _ = trained
  assert generate_main([f'--workdir={workdir}', '--from=image', '--to=text', '--num=3']) == 0
  rep = json.loads((workdir / 'generate' / 'image_to_text' / 'report.json').read_text())
  assert rep['examples'] == 3 and 0 <= rep['right_digit_share'] <= 1
  assert len(rep['samples']) == 3 and 0 <= rep['token_accuracy'] <= 1
  out = workdir / 'generate' / 'text_to_image'
  assert generate_main([f'--workdir={workdir}', '--from=text', '--to=image', '--num=3',
                        '--steps=4']) == 0
  rep = json.loads((out / 'report.json').read_text())
  assert rep['maskgit_steps'] == 4 and 'mse_here' in rep['tokenizer']
  assert len(list(out.glob('*.png'))) == 3 + 1                     # samples + grid.png
  capsys.readouterr()
  assert generate_main([f'--workdir={workdir}', '--from=text', '--to=text']) == 2
  assert 'two different modalities' in capsys.readouterr().err


def test_fsq_token_embedding_adds_code_coordinates(setup):
  """An image token's embedding is its table row plus its FSQ code coordinates (numpy: mixed-radix
  digits minus the half-width, divided by it) times `code_image`; text tokens use the table only."""
  _, model, _, _ = setup
  fm = model.fourm
  ids = np.array([[0, 5, 15], [7, 9, 3]], np.int32)                     # levels (4, 4): 16 codes
  digits = np.stack([ids % 4, ids // 4], -1).astype(np.float32)
  coords = (digits - 2.0) / 2.0
  want = (np.asarray(fm.tok_image[...])[ids]
          + coords @ np.asarray(fm.code_image[...]))
  np.testing.assert_allclose(np.asarray(fm.embed('image', jnp.asarray(ids))), want, atol=1e-6)
  np.testing.assert_allclose(np.asarray(fm.embed('text', jnp.asarray(ids))),
                             np.asarray(fm.tok_text[...])[ids])
  assert not hasattr(fm, 'code_text')
