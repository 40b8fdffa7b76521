"""TFRecord files read by record index without TensorFlow (TFDS's default `tfds build` format).

A TFRecord file is a sequence of frames: `length` (uint64 little-endian), a masked CRC32C of the
length (uint32), `length` bytes of data, a masked CRC32C of the data (uint32). Opening a file
walks its frame headers once (a seek per record, no data read) to index the records; a read
is then a seek and one `pread`. The writer exists for tests and tools; CRCs are written
correctly and checked on read of the length (a corrupt header is reported, not mis-parsed).
"""

from __future__ import annotations

import os
import struct

import numpy as np

_POLY = 0x82F63B78  # CRC32C (Castagnoli), reflected


def _table() -> np.ndarray:
  table = np.zeros(256, np.uint32)
  for i in range(256):
    crc = i
    for _ in range(8):
      crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
    table[i] = crc
  return table


_TABLE = [int(v) for v in _table()]


def crc32c(data: bytes) -> int:
  """CRC32C of `data` (pure Python; used for headers and by the writer)."""
  crc = 0xFFFFFFFF
  table = _TABLE
  for byte in data:
    crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TFRecordError(ValueError):
  """A TFRecord file whose framing is damaged (truncated, or a header CRC mismatch)."""


def index_file(path: str) -> np.ndarray:
  """`[records, 2]` int64 (data offset, data length) of every record in `path`."""
  offsets = []
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    pos = 0
    while pos < size:
      header = f.read(12)
      if len(header) < 12:
        raise TFRecordError(f'{path}: truncated record header at byte {pos}.')
      length, crc = struct.unpack('<QI', header)
      if masked_crc(header[:8]) != crc:
        raise TFRecordError(f'{path}: record header at byte {pos} fails its CRC; the file is '
                            'damaged: rebuild or re-download it.')
      if pos + 16 + length > size:
        raise TFRecordError(f'{path}: record at byte {pos} runs past the end of the file.')
      offsets.append((pos + 12, length))
      pos += 16 + length
      f.seek(pos)
  return np.asarray(offsets, np.int64).reshape(-1, 2)


class TFRecordFiles:
  """Records of several TFRecord files as one sequence: `len`, `[i]`, `__getitems__`.
  Picklable (file handles are opened lazily per process)."""

  def __init__(self, paths: list[str]):
    self.paths = list(paths)
    self._index = [index_file(p) for p in self.paths]
    counts = [len(i) for i in self._index]
    self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    self._fds: dict[int, int] = {}

  def __len__(self) -> int:
    return int(self._starts[-1])

  def __getstate__(self):
    return {**self.__dict__, '_fds': {}}

  def _fd(self, shard: int) -> int:
    if shard not in self._fds:
      self._fds[shard] = os.open(self.paths[shard], os.O_RDONLY)
    return self._fds[shard]

  def __getitem__(self, i: int) -> bytes:
    if not 0 <= i < len(self):
      raise IndexError(f'record {i} out of range [0, {len(self)})')
    shard = int(np.searchsorted(self._starts, i, side='right') - 1)
    offset, length = self._index[shard][i - self._starts[shard]]
    data = os.pread(self._fd(shard), int(length), int(offset))
    if len(data) != length:
      raise TFRecordError(f'{self.paths[shard]}: record {i} is truncated.')
    return data

  def __getitems__(self, indices) -> list[bytes]:
    return [self[int(i)] for i in indices]

  def __del__(self):
    for fd in getattr(self, '_fds', {}).values():
      try:
        os.close(fd)
      except OSError:
        pass


def write_tfrecord(path: str, records) -> int:
  """Writes `records` (bytes) as one TFRecord file; returns the count."""
  count = 0
  with open(path, 'wb') as f:
    for data in records:
      header = struct.pack('<Q', len(data))
      f.write(header + struct.pack('<I', masked_crc(header)) + data
              + struct.pack('<I', masked_crc(data)))
      count += 1
  return count
