"""What `tools/convert_data.py` reads: WebDataset tar shards and CSV/TSV tables of media paths.

Tables: the separator is sniffed from the header line (tab, comma, semicolon or pipe) unless
given; text is UTF-8 (a byte-order mark is dropped; a UTF-16 one is honoured) or the encoding
given; text that does not decode is one sentence naming the line and the `--encoding` to try.

WebDataset (the img2dataset layout): consecutive tar members sharing a key (the name up to its
first dot, directories included) form one example, e.g. `000123.jpg`, `000123.txt`,
`000123.json`. Shard lists are written with braces (`shard-{00000..00099}.tar`) or globs.
"""

from __future__ import annotations

import codecs
import csv
import glob
import io
import os
import re
import tarfile
from typing import Iterator

from etils import epath

_BRACES = re.compile(r'\{(\d+)\.\.(\d+)\}')


def expand(pattern: str) -> list[str]:
  """`a-{000..002}.tar` -> [a-000.tar, a-001.tar, a-002.tar] (zero-padded like the first
  bound; several brace ranges multiply); then globs; files must exist."""
  match = _BRACES.search(pattern)
  if match:
    lo, hi = match.group(1), match.group(2)
    width = len(lo) if lo.startswith('0') else 0
    out = []
    for i in range(int(lo), int(hi) + 1):
      out += expand(pattern[:match.start()] + str(i).zfill(width) + pattern[match.end():])
    return out
  if any(c in pattern for c in '*?['):
    return sorted(glob.glob(os.path.expanduser(pattern)))
  return [os.path.expanduser(pattern)]


def split_key(name: str) -> tuple[str, str]:
  """`dir/000123.jpg` -> ('dir/000123', 'jpg'); `a.b.json` -> ('a', 'b.json')."""
  folder, base = os.path.split(name)
  stem, _, ext = base.partition('.')
  return (os.path.join(folder, stem) if folder else stem), ext.lower()


def webdataset_examples(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
  """(key, {extension: bytes}) of each example of one tar shard, in tar order. A tar that ends
  early (a truncated download) yields what it holds, then raises `tarfile.ReadError`."""
  key, members = None, {}
  with tarfile.open(path, 'r|*') as tar:
    for member in tar:
      if not member.isfile():
        continue
      k, ext = split_key(member.name)
      if k != key and members:
        yield key, members
        members = {}
      key = k
      members[ext] = tar.extractfile(member).read()
  if members:
    yield key, members


class TableError(ValueError):
  """A table that cannot be read, in one sentence."""


SEPARATORS = '\t,;|'


def sniff_separator(header: str, path: str = '') -> str:
  """The separator of a table from its header line: the candidate (tab, comma, semicolon, pipe)
  it holds most often; a `.tsv` with none of them means tab."""
  counts = {c: header.count(c) for c in SEPARATORS}
  best = max(SEPARATORS, key=lambda c: counts[c])
  return best if counts[best] else ('\t' if path.lower().endswith('.tsv') else ',')


def _text(data: bytes, path: str, encoding: str) -> str:
  if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not encoding:
    encoding = 'utf-16'
  name = encoding or 'utf-8-sig'
  try:
    return data.decode(name)
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b'\n') + 1
    raise TableError(f'{path} is not {encoding or "UTF-8"} text (byte 0x{data[e.start]:02x} on '
                     f'line {line} does not decode); give its encoding, e.g. --encoding=latin-1 '
                     'or --encoding=cp1252.') from None
  except LookupError:
    raise TableError(f'--encoding={encoding} is not an encoding Python knows; use e.g. utf-8, '
                     'latin-1 or cp1252.') from None


def read_table(path: str, separator: str = '', encoding: str = '') -> list[dict[str, str]]:
  """Rows of a table with a header line (see the module docstring); raises TableError."""
  with epath.Path(path).open('rb') as f:  # local, or gs:// through etils' path layer
    text = _text(f.read(), path, encoding).lstrip('\ufeff')
  header = text.split('\n', 1)[0]
  separator = separator.encode().decode('unicode_escape') if separator else sniff_separator(
      header, path)
  reader = csv.DictReader(io.StringIO(text, newline=''), delimiter=separator)
  rows = [dict(row) for row in reader]
  if None in (reader.fieldnames or ()) or any(None in row for row in rows):
    raise TableError(f'{path}: some rows have more fields than the header (separator '
                     f'{separator!r}); quote fields that hold the separator, or set --separator.')
  return [{k.strip(): (v or '') for k, v in row.items()} for row in rows]
