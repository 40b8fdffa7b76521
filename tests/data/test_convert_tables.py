"""Tables as people write them (open_clip's tab-separated `filepath`/`title` .csv with absolute
paths, a BOM, other separators and encodings), and what a conversion must never do: keep
converting with other inputs, write a dataset of nothing, or replace the tokenizer another
split reads with."""

import io
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from mmjax.data import sources
from mmjax.data.convert import inputs as convert_inputs
from photo_fixtures import BROKEN, jpeg, pixels
from tools import convert_data


def convert(*args) -> int:
  return convert_data.main(list(args) + ['--workers=1', '--vocab_size=60'])


@pytest.fixture
def photos(tmp_path):
  """Good images (an EXIF-rotated JPEG, RGBA and 16-bit PNG, a panorama, a gray JPEG), the four
  kinds of broken file, and an open_clip table of them: tab-separated .csv with a UTF-8 BOM,
  absolute paths, captions in several scripts and one empty."""
  folder = tmp_path / 'images'
  folder.mkdir()
  exif = Image.Exif()
  exif[0x0112] = 6
  rgba = np.concatenate([pixels(2, 20, 30), np.full((20, 30, 1), 128, np.uint8)], -1)
  ok, png16 = cv2.imencode('.png', pixels(3, 18, 22).astype(np.uint16) * 257)
  gray = io.BytesIO()
  Image.fromarray(pixels(5, 16, 16)[..., 0]).save(gray, 'JPEG')
  good = {'rotated.jpg': (jpeg(pixels(1, 12, 20), exif=exif.tobytes()), 'un chat, vu de côté'),
          'rgba.png': (cv2.imencode('.png', rgba[..., [2, 1, 0, 3]])[1].tobytes(), '一只猫'),
          'deep.png': (png16.tobytes(), 'قطة'),
          'pano.jpg': (jpeg(pixels(4, 6, 90)), ''),
          'gray.jpg': (gray.getvalue(), 'кошка ' * 3000)}
  rows = []
  for name, (data, caption) in good.items():
    (folder / name).write_bytes(data)
    rows.append((str(folder / name), caption))
  for kind, (data, _) in BROKEN.items():
    (folder / f'{kind}.jpg').write_bytes(data)
    rows.append((str(folder / f'{kind}.jpg'), f'broken {kind}'))
  table = tmp_path / 'train.csv'
  table.write_bytes(b'\xef\xbb\xbf' + ('filepath\ttitle\n' + ''.join(
      f'{p}\t{c}\n' for p, c in rows)).encode('utf-8'))
  return tmp_path, folder, table, good


def test_open_clip_table_converts_skipping_exactly_the_broken_files(photos, capsys):
  root, folder, table, good = photos
  out = root / 'data'
  assert convert('csv', f'--input={table}', '--path_column=filepath', '--caption_column=title',
                 f'--output={out}', '--name=photos') == 0
  report = json.loads((out / 'photos/1.0.0/conversion_report.json').read_text())['train']
  skipped = {os.path.basename(s['key']): s['reason'] for s in report['skipped_examples']}
  assert report['examples'] == len(good)
  assert set(skipped) == {f'{kind}.jpg' for kind in BROKEN}
  for kind, (_, words) in BROKEN.items():
    assert words in skipped[f'{kind}.jpg']
  printed = capsys.readouterr().out
  assert all(f'{kind}.jpg' in printed for kind in BROKEN)
  source = sources.open_source('photos', 'train', str(out))
  got = source.read(range(len(good)), ['key', 'image', 'captions'])
  by_name = {os.path.basename(k): (im, list(c)) for k, im, c in zip(*got.values())}
  assert by_name['pano.jpg'][1] == [] and by_name['rgba.png'][1] == ['一只猫']
  assert len(by_name['gray.jpg'][1][0]) == len(('кошка ' * 3000).strip())
  upright = np.asarray(Image.open(io.BytesIO(by_name['rotated.jpg'][0])))
  assert upright.shape == (20, 12, 3)             # stored as a viewer shows it
  assert by_name['rgba.png'][0] == (folder / 'rgba.png').read_bytes()  # others as given
  tokenizer = out / 'photos/1.0.0/tokenizer.model'
  before = tokenizer.read_bytes()
  # Another split reuses the dataset's tokenizer: byte-identical afterwards.
  val = root / 'val.tsv'
  val.write_text('filepath\ttitle\n' + f'{folder}/pano.jpg\ta completely different text\n')
  assert convert('csv', f'--input={val}', '--path_column=filepath', '--caption_column=title',
                 f'--output={out}', '--name=photos', '--split=validation') == 0
  assert tokenizer.read_bytes() == before
  sources._tfds_builder.cache_clear()  # this process read the dataset before its new split
  assert sources.open_source('photos', 'validation', str(out)).tokenizer_path == str(tokenizer)
  # A different --tokenizer is refused before anything is written.
  other = root / 'other.model'
  from mmjax.data.tokenizer import train_sentencepiece
  train_sentencepiece(['other words entirely'] * 4, str(other), 20)
  assert convert('csv', f'--input={val}', '--path_column=filepath', '--caption_column=title',
                 f'--output={out}', '--name=photos', '--split=test',
                 f'--tokenizer={other}') == 2
  assert 'already exists and differs from --tokenizer' in capsys.readouterr().err
  assert not list((out / 'photos/1.0.0').glob('photos-test.*'))
  assert tokenizer.read_bytes() == before


def test_zero_examples_is_an_error_that_keeps_nothing(tmp_path, capsys):
  (tmp_path / 'imgs').mkdir()
  table = tmp_path / 'pairs.csv'
  table.write_text('path,caption\na.jpg,a cat\nb.jpg,a dog\n')
  out = tmp_path / 'data'
  assert convert('csv', f'--input={table}', f'--image_root={tmp_path}/imgs', f'--output={out}',
                 '--name=pets') == 2
  err = capsys.readouterr().err
  assert 'no example of' in err and 'missing file' in err and '--image_root' in err
  assert not out.exists() or not any(out.rglob('*.array_record*'))
  assert not (out / 'pets').exists()


def test_resumed_conversion_with_other_inputs_is_refused(tmp_path, capsys):
  (tmp_path / 'a.jpg').write_bytes(jpeg(pixels(0, 10, 10)))
  table = tmp_path / 'pairs.csv'
  table.write_text('path;caption;cls\na.jpg;a cat;cat\n')   # semicolons, relative to the table
  out = tmp_path / 'data'
  args = ('csv', f'--input={table}', f'--output={out}', '--name=pets', '--label_column=cls')
  assert convert(*args) == 0
  assert sources.open_source('pets', 'train', str(out)).features['label'].class_names == ('cat',)
  assert convert(*args) == 0                                  # the same inputs: kept
  table.write_text('path;caption;cls\na.jpg;a different cat;cat\n')
  assert convert(*args) == 2
  assert 'earlier conversion of split' in capsys.readouterr().err


@pytest.mark.parametrize('text,separator', [
    ('p\tc\nx.jpg\ta, b\n', '\t'), ('p,c\nx.jpg,"a, b"\n', ','), ('p;c\nx.jpg;a, b\n', ';'),
    ('p|c\nx.jpg|a, b\n', '|')])
def test_separator_is_sniffed_from_the_header(tmp_path, text, separator):
  assert convert_inputs.sniff_separator(text.split('\n')[0]) == separator
  path = tmp_path / 't.csv'
  path.write_text(text)
  assert convert_inputs.read_table(str(path)) == [{'p': 'x.jpg', 'c': 'a, b'}]


def test_encodings_bom_utf16_and_an_undecodable_table(tmp_path):
  rows = [{'path': 'é.jpg', 'caption': 'café'}]
  path = tmp_path / 't.csv'
  path.write_bytes('\ufeffpath,caption\né.jpg,café\n'.encode('utf-8'))
  assert convert_inputs.read_table(str(path)) == rows
  path.write_bytes('path,caption\né.jpg,café\n'.encode('utf-16'))
  assert convert_inputs.read_table(str(path)) == rows
  path.write_bytes('path,caption\né.jpg,café\n'.encode('latin-1'))
  with pytest.raises(convert_inputs.TableError,
                     match=r'is not UTF-8 text \(byte 0xe9 on line 2 does not decode\); give its '
                           r'encoding, e.g. --encoding=latin-1'):
    convert_inputs.read_table(str(path))
  assert convert_inputs.read_table(str(path), encoding='latin-1') == rows


def test_exif_orientation_can_be_kept_as_stored(tmp_path):
  exif = Image.Exif()
  exif[0x0112] = 8
  data = jpeg(pixels(1, 12, 20), exif=exif.tobytes())
  (tmp_path / 'r.jpg').write_bytes(data)
  (tmp_path / 't.csv').write_text('path,caption\nr.jpg,turned\n')
  out = tmp_path / 'data'
  for flag, name in (('--no-exif_orientation', 'kept'), ('--exif_orientation', 'upright')):
    assert convert('csv', f'--input={tmp_path}/t.csv', f'--output={out}', f'--name={name}',
                   flag) == 0
  stored = {n: sources.open_source(n, 'train', str(out)).read([0], ['image'])['image'][0]
            for n in ('kept', 'upright')}
  assert stored['kept'] == data
  assert np.asarray(Image.open(io.BytesIO(stored['upright']))).shape == (20, 12, 3)
