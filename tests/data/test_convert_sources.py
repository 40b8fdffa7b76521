"""More sources through `python -m tools.convert_data`: Parquet (paths, or image bytes), a
Hugging Face `save_to_disk` folder read with pyarrow, LLaVA's JSON annotations and JSON Lines,
a folder of class sub-folders with caption side files, and a table on `gs://`; each one's
converted examples match what the test wrote, and the loader feeds a task from one of them."""

import io
import json
import os
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from etils import epath

from conftest import make_config
from mmjax import paths
from mmjax.core.tasks import Resolution, Task
from mmjax.data import pipeline, sources
from photo_fixtures import BROKEN, jpeg, pixels, png
from tools import convert_data


def convert(*args) -> int:
  return convert_data.main(list(args) + ['--workers=1', '--vocab_size=40'])


def read(out, name: str, split: str = 'train'):
  sources._tfds_builder.cache_clear()
  source = sources.open_source(name, split, str(out))
  got = source.read(range(len(source)), list(source.features))
  return source, {str(k): {f: got[f][i] for f in got} for i, k in enumerate(got['key'])}


def test_parquet_with_image_bytes_row_groups_and_labels(tmp_path):
  images = [jpeg(pixels(i, 10 + i, 12)) for i in range(5)]
  table = pa.table({'key': [f'k{i}' for i in range(5)], 'jpg': images,
                    'txt': [['a cat', 'the cat'], ['a dog'], [], ['a bird'], ['a fish']],
                    'label': [3, 1, 3, 7, 1]})
  pq.write_table(table, tmp_path / 'part.parquet', row_group_size=2)   # 3 row groups
  out = tmp_path / 'data'
  assert convert('parquet', f'--input={tmp_path}/part.parquet', f'--output={out}',
                 '--name=pq_pairs') == 0
  source, got = read(out, 'pq_pairs')
  assert len(source) == 5 and len(list((out / 'pq_pairs/1.0.0').glob('*.array_record-*'))) == 3
  assert source.features['label'].class_names == ('1', '3', '7')
  for i in range(5):
    assert got[f'k{i}']['image'] == images[i]
    assert list(got[f'k{i}']['captions']) == table['txt'][i].as_py()
    assert ('1', '3', '7')[got[f'k{i}']['label']] == str(table['label'][i].as_py())


def test_parquet_with_paths_beside_it(tmp_path):
  (tmp_path / 'img').mkdir()
  for i in range(2):
    (tmp_path / 'img' / f'{i}.png').write_bytes(png(pixels(i, 8, 8)))
  pq.write_table(pa.table({'path': ['img/0.png', 'img/1.png'], 'caption': ['one', 'two']}),
                 tmp_path / 'meta.parquet')
  out = tmp_path / 'data'
  assert convert('parquet', f'--input={tmp_path}/meta.parquet', f'--output={out}',
                 '--name=pq_paths') == 0
  _, got = read(out, 'pq_paths')
  assert got['img/1.png']['image'] == (tmp_path / 'img/1.png').read_bytes()
  assert list(got['img/0.png']['captions']) == ['one']


def _save_to_disk(folder, splits: dict) -> None:
  """The layout `DatasetDict.save_to_disk` writes: dataset_dict.json, per split an Arrow
  stream file, state.json and dataset_info.json (an Image, a ClassLabel and a string)."""
  os.makedirs(folder)
  (folder / 'dataset_dict.json').write_text(json.dumps({'splits': list(splits)}))
  for split, table in splits.items():
    os.makedirs(folder / split)
    with pa.OSFile(str(folder / split / 'data-00000-of-00001.arrow'), 'wb') as sink:
      with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=2)
    (folder / split / 'state.json').write_text(json.dumps(
        {'_data_files': [{'filename': 'data-00000-of-00001.arrow'}], '_split': split}))
    (folder / split / 'dataset_info.json').write_text(json.dumps({'features': {
        'image': {'_type': 'Image'}, 'text': {'dtype': 'string', '_type': 'Value'},
        'label': {'names': ['zebra', 'ant', 'moose'], '_type': 'ClassLabel'}}}))


def test_hf_save_to_disk_read_with_pyarrow(tmp_path):
  images = [png(pixels(i, 9, 7)) for i in range(3)]
  image_type = pa.struct([('bytes', pa.binary()), ('path', pa.string())])
  train = pa.table({'image': pa.array([{'bytes': b, 'path': f'{i}.png'}
                                       for i, b in enumerate(images)], image_type),
                    'text': ['striped', 'tiny', 'antlers'], 'label': [0, 1, 2]})
  _save_to_disk(tmp_path / 'saved', {'train': train, 'test': train.slice(0, 1)})
  out = tmp_path / 'data'
  assert convert('hf', f'--input={tmp_path}/saved', f'--output={out}', '--name=hf_set') == 0
  source, got = read(out, 'hf_set')
  assert source.features['label'].class_names == ('zebra', 'ant', 'moose')  # HF's order kept
  assert [got[f'{i}.png']['label'] for i in range(3)] == [0, 1, 2]
  assert got['2.png']['image'] == images[2] and list(got['1.png']['captions']) == ['tiny']
  assert convert('hf', f'--input={tmp_path}/saved', f'--output={out}', '--name=hf_set',
                 '--split=validation') == 2                                 # not a split


def test_llava_json_and_json_lines(tmp_path, capsys):
  (tmp_path / 'imgs').mkdir()
  for i in range(2):
    (tmp_path / 'imgs' / f'{i}.jpg').write_bytes(jpeg(pixels(i, 8, 8)))
  llava = [{'id': str(i), 'image': f'{i}.jpg', 'conversations': [
      {'from': 'human', 'value': '<image>\nRender a clear and concise summary of the photo.'},
      {'from': 'gpt', 'value': f'caption number {i}'}]} for i in range(2)]
  llava.append({'id': 'gone', 'image': 'gone.jpg', 'conversations': llava[0]['conversations']})
  (tmp_path / 'llava.json').write_text(json.dumps(llava))
  out = tmp_path / 'data'
  assert convert('jsonl', f'--input={tmp_path}/llava.json', f'--image_root={tmp_path}/imgs',
                 f'--output={out}', '--name=llava') == 0
  assert 'missing file' in capsys.readouterr().out
  _, got = read(out, 'llava')
  assert sorted(got) == ['0.jpg', '1.jpg'] and list(got['1.jpg']['captions']) == [
      'caption number 1']
  (tmp_path / 'pairs.jsonl').write_text(''.join(json.dumps(
      {'file': f'imgs/{i}.jpg', 'caption': f'line {i}'}) + '\n' for i in range(2)))
  assert convert('jsonl', f'--input={tmp_path}/pairs.jsonl', f'--output={out}', '--name=lines',
                 '--path_column=file') == 0
  _, got = read(out, 'lines')
  assert list(got['imgs/0.jpg']['captions']) == ['line 0']


def test_image_folder_labels_captions_and_a_broken_file_then_a_batch(tmp_path):
  root = tmp_path / 'photos'
  for c, cls in enumerate(('cats', 'dogs')):
    (root / cls).mkdir(parents=True)
    for i in range(2):
      (root / cls / f'{i}.png').write_bytes(png(pixels(10 * c + i, 12, 12)))
  (root / 'cats' / '0.txt').write_text('a sleepy cat\n')
  (root / 'dogs' / 'bad.jpg').write_bytes(BROKEN['truncated'][0])
  out = tmp_path / 'data'
  assert convert('folder', f'--input={root}', f'--output={out}', '--name=pets') == 0
  source, got = read(out, 'pets')
  assert source.features['label'].class_names == ('cats', 'dogs') and len(source) == 4
  assert got[os.path.join('dogs', '1.png')]['label'] == 1
  assert list(got[os.path.join('cats', '0.png')]['captions']) == ['a sleepy cat']
  assert list(got[os.path.join('cats', '1.png')]['captions']) == []
  report = json.loads((out / 'pets/1.0.0/conversion_report.json').read_text())['train']
  assert [s['key'] for s in report['skipped_examples']] == [os.path.join('dogs', 'bad.jpg')]
  task = Task(name='cls', dataset='pets', split='train', modalities=('image',), batch_size=4,
              resolutions=(Resolution(image_size=8),), classify=('image',), num_classes=2)
  it = pipeline.make_train_iterator(task, make_config(str(out), threads=0), seed=0)
  batch = next(it)
  it.close()
  assert batch['image'].shape == (4, 8, 8, 3) and sorted(batch['label'].tolist()) == [0, 0, 1, 1]


def test_a_table_and_its_images_on_gcs(tmp_path, gcs):
  base = f'gs://bucket/{tmp_path.name}'
  epath.Path(base).mkdir(parents=True, exist_ok=True)
  image = jpeg(pixels(0, 8, 8))
  epath.Path(f'{base}/a.jpg').write_bytes(image)
  epath.Path(f'{base}/train.csv').write_text('filepath\ttitle\na.jpg\ton a bucket\n')
  out = tmp_path / 'data'
  assert convert('csv', f'--input={base}/train.csv', '--path_column=filepath',
                 '--caption_column=title', f'--output={out}', '--name=remote') == 0
  _, got = read(out, 'remote')
  assert got['a.jpg']['image'] == image and list(got['a.jpg']['captions']) == ['on a bucket']
  for i in range(2):                     # WebDataset shards on the bucket, named by a glob
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as tar:
      for name, data in ((f'{i}.jpg', image), (f'{i}.txt', f'shard {i}'.encode())):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    epath.Path(f'{base}/s-{i}.tar').write_bytes(buffer.getvalue())
  assert convert('webdataset', f'--input={base}/s-*.tar', f'--output={out}', '--name=wds') == 0
  _, got = read(out, 'wds')
  assert {k: list(v['captions']) for k, v in got.items()} == {'0': ['shard 0'], '1': ['shard 1']}
  assert convert('webdataset', f'--input={base}/s-{{0..2}}.tar', f'--output={out}',
                 '--name=wds3') == 2                               # s-2.tar is not there


from gcs_testing import gcs  # noqa: E402,F401 - the emulator fixture


def test_beam_pipeline_writes_the_pool_shards_byte_for_byte(tmp_path):
  pytest.importorskip('apache_beam')   # the optional `beam` extra
  (tmp_path / 'img').mkdir()
  rows = []
  for i in range(7):
    (tmp_path / 'img' / f'{i}.jpg').write_bytes(jpeg(pixels(i, 8 + i, 9)))
    rows.append(f'img/{i}.jpg,photo {i}')
  (tmp_path / 'img' / 'bad.jpg').write_bytes(BROKEN['zero_byte'][0])
  (tmp_path / 't.csv').write_text('path,caption\n' + '\n'.join(rows + ['img/bad.jpg,x']) + '\n')
  args = ('csv', f'--input={tmp_path}/t.csv', '--name=pairs', '--rows_per_shard=3')
  assert convert(*args, f'--output={tmp_path}/pool') == 0
  assert convert(*args, f'--output={tmp_path}/beam', '--engine=beam',
                 '--beam_args=--runner=DirectRunner --direct_num_workers=2') == 0
  pool, beam = tmp_path / 'pool/pairs/1.0.0', tmp_path / 'beam/pairs/1.0.0'
  shards = sorted(p.name for p in pool.glob('pairs-train.array_record-*'))
  assert len(shards) == 3 and shards == sorted(p.name for p in beam.glob('pairs-train.*'))
  for name in shards + ['tokenizer.model']:
    assert (pool / name).read_bytes() == (beam / name).read_bytes(), name
  assert (json.loads((pool / 'conversion_report.json').read_text())
          == json.loads((beam / 'conversion_report.json').read_text()))


def test_beam_workers_write_the_dataset_on_gcs_byte_for_byte(tmp_path, gcs):
  """--output=gs://...: each Beam worker uploads its shard whole; the dataset on the bucket is
  the local pool's, file for file, and the pool resumes it from the bucket without rewriting."""
  pytest.importorskip('apache_beam')
  rows = []
  for i in range(5):
    (tmp_path / f'{i}.jpg').write_bytes(jpeg(pixels(i, 8, 8 + i)))
    rows.append(f'{i}.jpg\tsnap {i}')
  (tmp_path / 't.tsv').write_text('path\tcaption\n' + '\n'.join(rows + ['gone.jpg\tx']) + '\n')
  args = ('csv', f'--input={tmp_path}/t.tsv', '--name=snaps', '--rows_per_shard=3')
  assert convert(*args, f'--output={tmp_path}/local') == 0
  local = tmp_path / 'local/snaps/1.0.0'
  want = {p.name: p.read_bytes() for p in local.iterdir() if p.is_file()}
  assert len([n for n in want if '.array_record-' in n]) == 2
  out = f'gs://bucket/{tmp_path.name}'
  assert convert(*args, f'--output={out}', '--engine=beam',
                 '--beam_args=--runner=DirectRunner --direct_num_workers=2') == 0
  folder = epath.Path(f'{out}/snaps/1.0.0')
  got = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != '_convert'}
  assert sorted(got) == sorted(want)
  for name in want:
    assert got[name] == want[name], name
  shard = folder / 'snaps-train.array_record-00000-of-00002'
  before = shard.stat().mtime
  assert convert(*args, f'--output={out}') == 0                 # resumed: nothing rewritten
  assert shard.stat().mtime == before and shard.read_bytes() == want[shard.name]
  (tmp_path / 'none.tsv').write_text('path\tcaption\ngone.jpg\tx\n')
  assert convert('csv', f'--input={tmp_path}/none.tsv', '--name=empty', f'--output={out}') == 2
  assert paths.walk_files(f'{out}/snaps') and not paths.walk_files(f'{out}/empty')  # none kept


def test_beam_engine_without_apache_beam_is_one_sentence(tmp_path, capsys, monkeypatch):
  find_spec = convert_data.importlib.util.find_spec
  monkeypatch.setattr(convert_data.importlib.util, 'find_spec',    # as if it were not installed
                      lambda name, *a: None if name == 'apache_beam' else find_spec(name, *a))
  (tmp_path / 'a.jpg').write_bytes(jpeg(pixels(0, 8, 8)))
  (tmp_path / 't.csv').write_text('path,caption\na.jpg,a\n')
  assert convert('csv', f'--input={tmp_path}/t.csv', f'--output={tmp_path}/out', '--name=x',
                 '--engine=beam') == 2
  assert "--engine=beam needs Apache Beam: pip install 'mmjax[beam]'" in capsys.readouterr().err
  assert not (tmp_path / 'out').exists()
