"""What `tools/convert_data.py` reads: WebDataset tar shards and CSV/TSV tables of media paths.

WebDataset (the img2dataset layout): consecutive tar members sharing a key (the name up to its
first dot, directories included) form one example, e.g. `000123.jpg`, `000123.txt`,
`000123.json`. Shard lists are written with braces (`shard-{00000..00099}.tar`) or globs.
"""

from __future__ import annotations

import csv
import glob
import os
import re
import tarfile
from typing import Iterator

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


def read_table(path: str) -> list[dict[str, str]]:
  """Rows of a CSV (or, for .tsv, tab-separated) table with a header line."""
  with open(path, newline='', encoding='utf-8') as f:
    delimiter = '\t' if path.lower().endswith('.tsv') else ','
    return [dict(row) for row in csv.DictReader(f, delimiter=delimiter)]
