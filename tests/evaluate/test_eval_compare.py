"""`--workdir=A,B,C`: one table with a column per model, from each model's report."""

import json

from mmjax.evaluate import __main__ as cli, compare


def _report(step, top1, r1, shot):
  return {'step': step, 'checkpoint': f'ckpt {step}',
          'zero_shot': {'digits/image': {'top1': top1, 'top5': 0.9, 'mean_per_class_recall': top1}},
          'retrieval': {'digits/image_to_text': {'R@1': r1, 'R@5': 0.5, 'R@10': 0.75,
                                                 'median_rank': 3.0}},
          'few_shot': {'digits/image': {'1shot': {'top1': shot, 'top1_std': 0.0, 'l2': 1024.0}}},
          'linear_probe': {}}


def test_table_has_a_column_per_model(tmp_path):
  assert compare.labels(['runs/a', 'runs/b/export', 'x/export']) == ['a', 'runs/b/export',
                                                                      'x/export']
  path = compare.write({'a': _report(6, 0.25, 0.125, 0.5), 'b': _report(9, 0.75, 0.375, 0.625)},
                       str(tmp_path))
  t = json.loads((tmp_path / 'comparison.json').read_text())
  by_key = {(r['section'], r['name'], r['metric']): (r['a'], r['b']) for r in t['rows']}
  assert by_key[('zero_shot', 'digits/image', 'top1')] == (0.25, 0.75)
  assert by_key[('retrieval', 'digits/image_to_text', 'R@1')] == (0.125, 0.375)
  assert by_key[('few_shot', 'digits/image', '1shot (l2 1024)')] == (0.5, 0.625)
  assert ('retrieval', 'digits/image_to_text', 'median_rank') not in by_key
  md = open(path).read()
  assert '| zero shot | digits/image | top1 | 25.00 | 75.00 |' in md and 'a step 6' in md


def test_several_models_need_an_output(tmp_path, capsys):
  assert cli.main([f'--workdir={tmp_path}/a,{tmp_path}/b']) == 2
  err = capsys.readouterr().err
  assert 'needs --output' in err and '\n' not in err.strip()
