"""Each source `tools.convert_data` reads besides tars and CSV (Parquet, a Hugging Face
`save_to_disk` folder, LLaVA JSON, an image folder) is converted through the CLI and trains
through `python -m mmjax.train`: one run whose four tasks each read one converted dataset
(round robin, one step each), the datasets sharing the first one's tokenizer (`--tokenizer`)."""

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmjax.train import __main__ as train_cli
from photo_fixtures import jpeg, pixels, png
from test_convert_sources import _save_to_disk, convert

N = 8   # examples per source: one batch on the 8 test devices


def _parquet(tmp_path) -> list[str]:
  pq.write_table(pa.table({'jpg': [jpeg(pixels(i, 12 + i, 14)) for i in range(N)],
                           'txt': [f'a parquet photo {i}' for i in range(N)]}),
                 tmp_path / 'part.parquet', row_group_size=3)
  return ['parquet', f'--input={tmp_path}/part.parquet']


def _hf(tmp_path) -> list[str]:
  image_type = pa.struct([('bytes', pa.binary()), ('path', pa.string())])
  _save_to_disk(tmp_path / 'saved', {'train': pa.table({
      'image': pa.array([{'bytes': png(pixels(20 + i, 10, 9)), 'path': f'{i}.png'}
                         for i in range(N)], image_type),
      'text': [f'hf picture {i}' for i in range(N)], 'label': [i % 3 for i in range(N)]})})
  return ['hf', f'--input={tmp_path}/saved']


def _llava(tmp_path) -> list[str]:
  (tmp_path / 'imgs').mkdir()
  items = []
  for i in range(N):
    (tmp_path / 'imgs' / f'{i}.jpg').write_bytes(jpeg(pixels(40 + i, 16, 11)))
    items.append({'id': str(i), 'image': f'{i}.jpg', 'conversations': [
        {'from': 'human', 'value': '<image>\nDescribe the photo briefly.'},
        {'from': 'gpt', 'value': f'a llava scene {i}'}]})
  (tmp_path / 'llava.json').write_text(json.dumps(items))
  return ['jsonl', f'--input={tmp_path}/llava.json', f'--image_root={tmp_path}/imgs']


def _folder(tmp_path) -> list[str]:
  for i in range(N):
    cls = tmp_path / 'pets' / ('cats', 'dogs')[i % 2]
    cls.mkdir(parents=True, exist_ok=True)
    (cls / f'{i}.png').write_bytes(png(pixels(60 + i, 13, 13)))
    (cls / f'{i}.txt').write_text(f'a folder pet {i}')
  return ['folder', f'--input={tmp_path}/pets']


CONFIG = '''"""python -m mmjax.train --config=THIS --config.data_dir=DATA: four sources."""
from mmjax.config.defaults import base_config, task


def get_config(arg=None):
  c = base_config()
  c.total_steps, c.log_every, c.checkpoint_every = 4, 1, 4
  c.agd.mode = 'round_robin'           # tasks in name order, one step each
  c.model.update(num_layers=1, embed_dim=32, patch_size=8, max_grid=2, max_text_length=8,
                 vocab_size=64)
  c.data.threads = 1
  pairs = dict(contrast='image-text', image_size=16, text_length=8)
  c.tasks.a_parquet = task('src_parquet', 'image,text', 8, **pairs)
  c.tasks.b_hf = task('src_hf', 'image', 8, classify='image', num_classes=3, image_size=16)
  c.tasks.c_llava = task('src_llava', 'image,text', 8, **pairs)
  c.tasks.d_folder = task('src_folder', 'image', 8, classify='image', num_classes=2,
                          image_size=16)
  return c
'''


@pytest.mark.slow
def test_each_new_source_converts_and_trains_through_the_cli(tmp_path):
  data = tmp_path / 'data'
  tokenizer = data / 'src_parquet/1.0.0/tokenizer.model'
  for name, write in (('parquet', _parquet), ('hf', _hf), ('llava', _llava),
                      ('folder', _folder)):
    (tmp_path / name).mkdir()
    shared = [f'--tokenizer={tokenizer}'] if name != 'parquet' else []
    assert convert(*write(tmp_path / name), f'--output={data}', f'--name=src_{name}',
                   *shared) == 0, name
    report = json.loads((data / f'src_{name}/1.0.0/conversion_report.json').read_text())
    assert report['train']['examples'] == N and report['train']['skipped'] == 0, name
  (tmp_path / 'config.py').write_text(CONFIG)
  assert train_cli.main([f'--config={tmp_path}/config.py', f'--workdir={tmp_path}/run',
                         f'--config.data_dir={data}']) == 0
  rows = [json.loads(l) for l in (tmp_path / 'run/metrics.jsonl').read_text().splitlines()]
  rows = [r for r in rows if 'loss' in r]  # training rows (the last row is the goodput)
  assert [(r['step'], r['task']) for r in rows] == [
      (1, 'a_parquet'), (2, 'b_hf'), (3, 'c_llava'), (4, 'd_folder')]
  assert all(np.isfinite(r['loss']) for r in rows)
  assert all(rows[-1][f'tasks/{t}/examples'] == N for t in ('a_parquet', 'b_hf', 'c_llava',
                                                            'd_folder'))
  assert 'nce/image_text' in rows[0] and 'xent/image' in rows[1]   # each task's own objective
