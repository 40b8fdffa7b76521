"""`python -m tools.convert_data csv --modality=point_cloud|time_series`: tables of .npy, .ply
and .csv files -> a dataset whose arrays equal the files', read back through the loader."""

import os

import numpy as np

from mmjax.data import features, sources
from tools import convert_data


def _write(folder, rows: dict[str, str]):
  with open(os.path.join(folder, 'table.csv'), 'w') as f:
    f.write('path,caption\n' + ''.join(f'{p},{c}\n' for p, c in rows.items()))
  return os.path.join(folder, 'table.csv')


def _convert(table, out, modality, name):
  return convert_data.main(['csv', f'--input={table}', f'--output={out}', f'--name={name}',
                            f'--modality={modality}', '--workers=1', '--vocab_size=40'])


def _read(out, name, modality):
  src = sources.open_source(name, 'train', out)
  assert features.resolve((modality, 'text'), (), src.features, dataset=name, who='t') == {
      modality: modality, 'text': 'captions'}
  col = src.read(range(len(src)), [modality, 'key'])
  return dict(zip(col['key'], col[modality]))


def test_point_cloud_files(tmp_path):
  rng = np.random.default_rng(0)
  a = rng.normal(size=(20, 3)).astype(np.float32)
  b = rng.normal(size=(15, 2))
  c = rng.normal(size=(10, 3)).astype('<f4')
  np.save(tmp_path / 'a.npy', a)
  np.savetxt(tmp_path / 'b.csv', b, delimiter=',', header='x,y', comments='')
  (tmp_path / 'c.ply').write_bytes(
      b'ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\n'
      b'property float y\nproperty float z\nend_header\n' + c.tobytes())
  (tmp_path / 'd.ply').write_text('ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n'
                                  'property float y\nend_header\n0 0\n1 0\n0 1\n')
  (tmp_path / 'bad.npy').write_bytes(b'not an array')
  table = _write(tmp_path, {'a.npy': 'a blob', 'b.csv': 'a flat shape', 'c.ply': 'a ply',
                            'd.ply': 'a triangle', 'bad.npy': 'broken'})
  assert _convert(table, tmp_path / 'out', 'point_cloud', 'shapes') == 0
  got = _read(str(tmp_path / 'out'), 'shapes', 'point_cloud')
  assert sorted(got) == ['a.npy', 'b.csv', 'c.ply', 'd.ply']      # the broken file skipped
  np.testing.assert_array_equal(got['a.npy'], a)
  np.testing.assert_allclose(got['b.csv'][:, :2], b, rtol=1e-6)
  assert np.all(got['b.csv'][:, 2] == 0) and np.all(got['d.ply'][:, 2] == 0)   # 2-D: z = 0
  np.testing.assert_array_equal(got['c.ply'], c)
  np.testing.assert_array_equal(got['d.ply'][:, :2], [[0, 0], [1, 0], [0, 1]])


def test_time_series_files(tmp_path):
  rng = np.random.default_rng(1)
  a = rng.normal(size=(30, 4)).astype(np.float32)
  b = rng.normal(size=(12, 4))
  np.save(tmp_path / 'a.npy', a)
  np.savetxt(tmp_path / 'b.csv', b, delimiter='\t')
  (tmp_path / 'c.csv').write_text('t,v\n1,2\n3,x\n')
  table = _write(tmp_path, {'a.npy': 'a walk', 'b.csv': 'a run', 'c.csv': 'a typo'})
  assert _convert(table, tmp_path / 'out', 'time_series', 'walks') == 0
  got = _read(str(tmp_path / 'out'), 'walks', 'time_series')
  assert sorted(got) == ['a.npy', 'b.csv']            # 4 channels, from the first file
  np.testing.assert_array_equal(got['a.npy'], a)
  np.testing.assert_allclose(got['b.csv'], b, rtol=1e-6)
