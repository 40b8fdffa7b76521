"""What `tools/convert_data.py` reads: WebDataset tar shards and CSV/TSV tables of media paths.

Tables: the separator is sniffed from the header line (tab, comma, semicolon or pipe) unless
given; text is UTF-8 (a byte-order mark is dropped; a UTF-16 one is honoured) or the encoding
given; text that does not decode is one sentence naming the line and the `--encoding` to try.

WebDataset (the img2dataset layout): consecutive tar members sharing a key (the name up to its
first dot, directories included) form one example, e.g. `000123.jpg`, `000123.txt`,
`000123.json`. Shard lists are written with braces (`shard-{00000..00099}.tar`) or globs. A
shard is a local path, a URL of etils' path layer (`gs://bucket/shard-{0000..0099}.tar`), or
WebDataset's `pipe:CMD`: the tar is what the shell command CMD writes to its stdout (e.g.
`pipe:curl -sfL https://host/shard-{0000..0099}.tar`, `pipe:aws s3 cp s3://b/s-{0..9}.tar -`);
braces expand over the whole command, one command per shard. A command that exits non-zero is
`ShardError`: its status and the last line it wrote to stderr.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import glob
import io
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
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
  if pattern.startswith(PIPE):
    return [pattern]                      # a command: braces only, its `*` are the shell's
  if '://' in pattern:
    folder, name = pattern.rsplit('/', 1)
    if any(c in name for c in '*?['):
      return sorted(str(p) for p in epath.Path(folder).glob(name))
    return [pattern]
  if any(c in pattern for c in '*?['):
    return sorted(glob.glob(os.path.expanduser(pattern)))
  return [os.path.expanduser(pattern)]


PIPE = 'pipe:'


class ShardError(OSError):
  """A shard whose bytes could not all be read (a failing `pipe:` command), in one sentence."""


def missing_shard(shard: str) -> str:
  """Why `shard` cannot be read ('' when it can be tried): a local file or object that does
  not exist, or a `pipe:` command whose program is not on PATH. A command's own failure shows
  only when it runs (`open_shard`)."""
  if shard.startswith(PIPE):
    try:
      words = shlex.split(shard[len(PIPE):])
    except ValueError as e:
      return f'{shard!r} is not a shell command ({e})'
    if not words:
      return f'{shard!r} names no command'
    program = words[0]
    plain = '=' not in program and not program.startswith(('(', '{', '$'))
    if plain and shutil.which(program) is None:
      return f'{shard!r} runs {program!r}, which is not on PATH'
    return ''
  if '://' in shard:
    return '' if epath.Path(shard).exists() else f'{shard} does not exist'
  return '' if os.path.isfile(shard) else f'{shard} is not a file'


def shard_name(shard: str) -> str:
  """A short name of a shard for reports: its file name; a command's last word naming a tar
  (else the command)."""
  if shard.startswith(PIPE):
    try:
      words = list(shlex.shlex(shard[len(PIPE):], posix=True, punctuation_chars=True))
    except ValueError:
      words = shard[len(PIPE):].split()
    tars = [w for w in words if '.tar' in w]
    if not tars:
      return shard
    shard = tars[-1]
  return os.path.basename(shard.rstrip('/')) or shard


def _exit_status(proc: subprocess.Popen, timeout: float) -> int | None:
  try:
    return proc.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    return None


def _command_failed(command: str, status: int, err) -> str:
  err.seek(0)
  lines = [l.strip() for l in err.read().decode('utf-8', 'replace').splitlines() if l.strip()]
  said = f' ({lines[-1][:300]})' if lines else ''
  return (f'`{command}` exited with status {status}{said}; run it in a shell to check it '
          'writes the tar to stdout')


@contextlib.contextmanager
def open_shard(shard: str):
  """A binary stream of one tar shard (see the module docstring). For `pipe:CMD` the stream is
  CMD's stdout; leaving the block drains it and raises `ShardError` when CMD failed (also when
  reading broke because CMD stopped early), and kills CMD when the reader stops first."""
  if not shard.startswith(PIPE):
    with epath.Path(shard).open('rb') as f:
      yield f
    return
  command = shard[len(PIPE):]
  with tempfile.TemporaryFile() as err:
    proc = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, stderr=err,
                            stdin=subprocess.DEVNULL)
    try:
      try:
        yield proc.stdout
        while proc.stdout.read(1 << 20):   # what follows the archive's end
          pass
        status = proc.wait()
      except Exception as e:
        status = _exit_status(proc, timeout=1.0)   # None: CMD still writes, the tar is bad
        if not status:
          raise
        raise ShardError(_command_failed(command, status, err)) from e
      if status:
        raise ShardError(_command_failed(command, status, err))
    finally:
      if proc.poll() is None:
        proc.kill()
      proc.wait()
      proc.stdout.close()


def split_key(name: str) -> tuple[str, str]:
  """`dir/000123.jpg` -> ('dir/000123', 'jpg'); `a.b.json` -> ('a', 'b.json')."""
  folder, base = os.path.split(name)
  stem, _, ext = base.partition('.')
  return (os.path.join(folder, stem) if folder else stem), ext.lower()


def webdataset_examples(path: str) -> Iterator[tuple[str, dict[str, bytes]]]:
  """(key, {extension: bytes}) of each example of one tar shard (a path, URL or `pipe:CMD`), in
  tar order. A tar that ends early (a truncated download) yields what it holds, then raises
  `tarfile.ReadError` (`ShardError` when a command failed)."""
  key, members = None, {}
  with open_shard(path) as stream, tarfile.open(fileobj=stream, mode='r|*') as tar:
    for member in tar:
      if not member.isfile():
        continue
      k, ext = split_key(member.name)
      if k != key and members:
        yield key, members
        members = {}
      key = k
      members[ext] = tar.extractfile(member).read()
    if members:   # before the block ends: a failed command raises after the last example
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
