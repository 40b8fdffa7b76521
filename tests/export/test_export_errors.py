"""Bad input gives one sentence, exit 2 and touches nothing; --overwrite replaces an export
atomically; a failed parity check exits 1 and keeps the old export; no dataset -> synthetic."""

import json
import os

import pytest

import export_fixtures as fx
from mmjax.core.exports import layout
from mmjax.export import __main__ as cli
from mmjax.export import parity


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """A checkpointed run without evaluation data or tokenizer (parity uses a synthetic batch)."""
  workdir = str(tmp_path_factory.mktemp('run'))
  fx.make_run(workdir, with_eval=False)
  return workdir


def _snapshot(path):
  out = {}
  for root, _, files in os.walk(path):
    for f in files:
      p = os.path.join(root, f)
      with open(p, 'rb') as fh:
        out[os.path.relpath(p, path)] = fh.read()
  return out


def _fails(capsys, argv, match):
  code = cli.main(argv)
  err = capsys.readouterr().err.strip()
  assert code == 2, err
  assert err.startswith('error: ') and '\n' not in err and match in err, err
  return err


def test_missing_run_or_checkpoint(run, tmp_path, capsys):
  out = str(tmp_path / 'out')
  _fails(capsys, [f'--workdir={tmp_path / "nope"}', f'--output={out}'], 'has no config.json')
  empty = tmp_path / 'empty'
  empty.mkdir()
  (empty / 'config.json').write_text('{}')
  _fails(capsys, [f'--workdir={empty}', f'--output={out}'], 'is not a valid run config')
  (empty / 'config.json').write_text(open(os.path.join(run, 'config.json')).read())
  _fails(capsys, [f'--workdir={empty}', f'--output={out}'], 'no checkpoint in')
  assert not os.path.exists(out)


@pytest.mark.parametrize('flags, match', [
    (['--format=orbax,onnx'], "unknown export format 'onnx'"),
    (['--dtype=float16'], "unknown --dtype 'float16'"),
    (['--step=7'], f'checkpoint step 7 does not exist'),
])
def test_bad_flags_write_nothing(run, tmp_path, capsys, flags, match):
  out = str(tmp_path / 'out')
  _fails(capsys, [f'--workdir={run}', f'--output={out}'] + flags, match)
  assert os.listdir(tmp_path) == []


def test_existing_output_is_refused_and_left_intact(run, tmp_path, capsys):
  export = tmp_path / 'export'
  export.mkdir()
  (export / layout.REPORT).write_text('{"old": true}')
  (export / 'model.safetensors').write_bytes(b'old weights')
  before = _snapshot(export)
  _fails(capsys, [f'--workdir={run}', f'--output={export}'], 'already holds an export')
  other = tmp_path / 'other'
  other.mkdir()
  (other / 'notes.txt').write_text('mine')
  _fails(capsys, [f'--workdir={run}', f'--output={other}', '--overwrite'], 'holds no mmjax export')
  afile = tmp_path / 'file'
  afile.write_text('x')
  _fails(capsys, [f'--workdir={run}', f'--output={afile}'], 'is a file')
  assert _snapshot(export) == before and _snapshot(other) == {'notes.txt': b'mine'}
  assert sorted(os.listdir(tmp_path)) == ['export', 'file', 'other']


def test_overwrite_replaces_and_parity_failure_keeps_old(run, tmp_path, capsys, monkeypatch):
  out = tmp_path / 'export'
  assert cli.main([f'--workdir={run}', f'--output={out}', '--format=orbax']) == 0
  printed = capsys.readouterr().out
  assert str(out / 'orbax') in printed and 'report:' in printed
  report = json.loads((out / layout.REPORT).read_text())
  assert report['parity']['pass'] and report['parity']['batch']['source'] == 'synthetic'
  assert 'no evaluation.datasets entry' in report['parity']['batch']['fallback_reason']
  assert cli.main([f'--workdir={run}', f'--output={out}', '--format=safetensors',
                   '--overwrite']) == 0
  assert sorted(os.listdir(out)) == sorted(['config.json', layout.MODEL_CARD, layout.REPORT,
                                           layout.SAFETENSORS])
  assert json.loads((out / layout.REPORT).read_text())['tokenizer'] is None
  assert sorted(os.listdir(tmp_path)) == ['export']  # no temp or old directories left
  before = _snapshot(out)
  monkeypatch.setitem(parity.TOLERANCES, 'float32', {'max_abs_diff': -1.0, 'min_cosine': 2.0})
  capsys.readouterr()
  assert cli.main([f'--workdir={run}', f'--output={out}', '--format=orbax', '--overwrite']) == 1
  assert 'parity failed' in capsys.readouterr().err
  assert _snapshot(out) == before
  rejected = json.loads((tmp_path / 'export.rejected' / layout.REPORT).read_text())
  assert not rejected['parity']['pass'] and not rejected['parity']['formats']['orbax']['pass']
