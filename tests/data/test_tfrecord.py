"""The TF-free TFRecord reader against the format's definition (CRC32C check value, framing)."""

import pickle
import struct

import pytest

from mmjax.data import tfrecord


def test_crc32c_check_value_and_masking():
  assert tfrecord.crc32c(b'123456789') == 0xE3069283          # the CRC-32C check value
  crc = tfrecord.crc32c(b'abc')
  assert tfrecord.masked_crc(b'abc') == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8)
                                         & 0xFFFFFFFF)


def test_records_across_files_by_index(tmp_path):
  a, b = tmp_path / 'a.tfrecord', tmp_path / 'b.tfrecord'
  assert tfrecord.write_tfrecord(str(a), [b'zero', b'', b'two' * 100]) == 3
  tfrecord.write_tfrecord(str(b), [b'three', b'four'])
  data = a.read_bytes()
  assert struct.unpack('<Q', data[:8])[0] == 4 and data[12:16] == b'zero'  # framing by hand
  files = tfrecord.TFRecordFiles([str(a), str(b)])
  assert len(files) == 5
  assert files.__getitems__([4, 0, 2, 1, 3]) == [b'four', b'zero', b'two' * 100, b'', b'three']
  copy = pickle.loads(pickle.dumps(files))                     # worker processes reopen files
  assert copy[3] == b'three'
  with pytest.raises(IndexError):
    files[5]


def test_damage_is_reported_not_misread(tmp_path):
  path = tmp_path / 'x.tfrecord'
  tfrecord.write_tfrecord(str(path), [b'hello', b'world'])
  data = path.read_bytes()
  path.write_bytes(data[:-3])                                  # truncated last record
  with pytest.raises(tfrecord.TFRecordError, match='runs past the end'):
    tfrecord.index_file(str(path))
  path.write_bytes(data[:21] + b'\xff' + data[22:])           # second header's length hit
  with pytest.raises(tfrecord.TFRecordError, match='fails its CRC'):
    tfrecord.index_file(str(path))
