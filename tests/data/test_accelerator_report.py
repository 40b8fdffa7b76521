"""`python -m tools.accelerator_report` on the CPU with tiny shapes (what CI runs): every
section is filled, the kernels agree with their references, the files are written."""

import json
import os

from tools import accelerator_report


def test_accelerator_report_tiny_on_cpu(digits_dir, tmp_path, capsys):
  out = tmp_path / 'report'
  assert accelerator_report.main([f'--out={out}', '--tiny', f'--data_dir={digits_dir}']) == 0
  report = json.loads((out / 'accelerator_report.json').read_text())
  md = (out / 'accelerator_report.md').read_text()
  assert report['meta']['backend'] == 'cpu' and report['meta']['tiny'] and not report['skipped']
  checks = {r['check']: r for r in report['kernels']}
  assert {'flash: lengths + segments + GQA', 'grouped matmul'} <= set(checks)
  assert all(r['ok'] and r['max_err'] < 2e-3 for r in checks.values()), checks
  attn = report['attention']
  assert {r['impl'] for r in attn} == {'pallas', 'cudnn', 'xla'}
  assert all(r['note'].startswith('skipped: cuDNN needs a GPU') for r in attn
             if r['impl'] == 'cudnn')
  assert all(r['tflops'] > 0 for r in attn + report['grouped_matmul'] if r['impl'] != 'cudnn')
  assert {r['impl'] for r in report['grouped_matmul']} >= {'pallas', 'ragged_dot'}
  steps = {r['model']: r for r in report['train_step']}
  assert set(steps) == {'dense', 'moe'}
  for r in steps.values():
    assert r['step_ms'] > 0 and r['tflop_per_step'] > 0 and 0 < r['mfu'], r
  (pipe,) = report['input_pipeline']
  assert pipe['loader_examples_per_s'] > 0
  assert abs(pipe['headroom'] - pipe['loader_examples_per_s'] / steps['dense']['examples_per_s']
             ) < 1e-9
  for title in ('Attention TFLOP/s', 'Grouped matmul vs ragged_dot', 'Train step',
                'Input pipeline'):
    assert f'## {title}' in md
  assert os.path.getsize(out / 'accelerator_report.md') > 0
  capsys.readouterr()
