"""CLIP's byte-level BPE tokenizer, id for id as `open_clip.tokenize`.

Text is cleaned as open_clip does (ftfy's Unicode repair, HTML entities unescaped twice,
whitespace collapsed, lower-cased), split by CLIP's pattern (contractions, letter runs, single
digits, other non-space runs), mapped byte -> printable character and merged by the HF
`tokenizers` BPE model (end-of-word suffix `</w>`). Ids: 256 bytes, 256 bytes + `</w>`, the
48,894 merges of `clip_merges.txt` (shipped with mmjax, OpenAI's vocabulary), then
`<start_of_text>` = 49406 and `<end_of_text>` = 49407; every text becomes
`[sot] + tokens + [eot]`, cut to `length` keeping eot last, padded with 0.

The tokenizer is stored in an export as `tokenizer.json` (the `tokenizers` serialization, which
holds the vocabulary and merges), and read back by `ClipTokenizer(path)`.
"""

from __future__ import annotations

import functools
import html
import os
import threading

import ftfy
import numpy as np
import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from mmjax.data.errors import DataError

MERGES_FILE = os.path.join(os.path.dirname(__file__), 'clip_merges.txt')
TOKENIZER_FILE = 'tokenizer.json'
SOT, EOT = '<start_of_text>', '<end_of_text>'
PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def bytes_to_unicode() -> dict[int, str]:
  """GPT-2/CLIP's reversible byte -> printable character map: printable Latin-1 bytes map to
  themselves and come first (the vocabulary's order), the others to code points from 256 on."""
  keep = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1))
          + list(range(ord('®'), ord('ÿ') + 1)))
  out = {b: chr(b) for b in keep}
  for i, b in enumerate(b for b in range(256) if b not in out):
    out[b] = chr(256 + i)
  return out


def build(merges_file: str = MERGES_FILE) -> tokenizers.Tokenizer:
  """The `tokenizers.Tokenizer` of CLIP's vocabulary (no clean-up: `ClipTokenizer` does it)."""
  with open(merges_file, encoding='utf-8', newline='\n') as f:
    lines = f.read().split('\n')[1:]      # line 0 says what the file is
  merges = [tuple(line.split()) for line in lines if line]
  chars = list(bytes_to_unicode().values())
  vocab = chars + [c + '</w>' for c in chars] + [''.join(m) for m in merges] + [SOT, EOT]
  tok = tokenizers.Tokenizer(models.BPE({v: i for i, v in enumerate(vocab)}, merges,
                                        end_of_word_suffix='</w>'))
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(tokenizers.Regex(PATTERN), behavior='removed', invert=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  tok.decoder = decoders.BPEDecoder(suffix='</w>')
  tok.add_special_tokens([SOT, EOT])
  return tok


def clean(text) -> str:
  """open_clip's 'lower' clean-up: ftfy, HTML unescaped twice, whitespace collapsed, lower."""
  if isinstance(text, bytes):
    text = text.decode('utf-8')
  text = html.unescape(html.unescape(ftfy.fix_text(str(text)))).strip()
  return ' '.join(text.split()).lower()


class ClipTokenizer:
  """Batched CLIP tokenization with the interface of `mmjax.data.tokenizer.Tokenizer`."""

  lowercase = True

  def __init__(self, model_file: str | None = None):
    if model_file is not None and not os.path.isfile(model_file):
      raise DataError(f'CLIP tokenizer {model_file!r} does not exist: pass the tokenizer.json '
                      'of an imported export (python -m tools.import_weights).')
    self.model_file = os.fspath(model_file) if model_file else None
    self._tok = tokenizers.Tokenizer.from_file(model_file) if model_file else build()
    self.sot, self.eot = self._tok.token_to_id(SOT), self._tok.token_to_id(EOT)
    if self.sot is None or self.eot is None:
      raise DataError(f'{model_file} is not a CLIP tokenizer (no {SOT} / {EOT} tokens).')
    self._lock = threading.Lock()
    self._pieces = functools.lru_cache(maxsize=1 << 16)(self._encode_one)

  def __reduce__(self):
    return (ClipTokenizer, (self.model_file,))

  @property
  def vocab_size(self) -> int:
    return int(self._tok.get_vocab_size())

  def save(self, path: str) -> None:
    self._tok.save(path)

  def _encode_one(self, text: str) -> tuple[int, ...]:
    with self._lock:
      return tuple(self._tok.encode(text, add_special_tokens=False).ids)

  def tokenize(self, texts, length: int = 77) -> np.ndarray:
    """`texts` -> int32 `[n, length]`, equal to `open_clip.tokenize(texts, context_length=length)`."""
    if isinstance(texts, (str, bytes)):
      texts = [texts]
    ids = np.zeros((len(texts), length), np.int32)
    for i, t in enumerate(texts):
      row = [self.sot, *self._pieces(clean(t)), self.eot][:length]
      row[-1] = self.eot
      ids[i, :len(row)] = row
    return ids

  def encode(self, texts, length: int) -> tuple[np.ndarray, np.ndarray]:
    """`(ids, mask)` as `Tokenizer.encode`: mask 1 up to and including the end token."""
    ids = self.tokenize(texts, length)
    mask = (np.arange(length)[None] <= np.argmax(ids == self.eot, axis=1)[:, None])
    return ids, mask.astype(np.int32)

  def tokens(self, text) -> list[str]:
    return self._tok.encode(clean(text), add_special_tokens=False).tokens

  def decode(self, ids) -> list[str]:
    ids = np.asarray(ids)
    rows = ids[None] if ids.ndim == 1 else ids
    special = {self.sot, self.eot, 0}
    return [self._tok.decode([int(i) for i in row if int(i) not in special]) for row in rows]

  def describe(self) -> dict:
    return {'kind': 'clip_bpe', 'model_file': self.model_file, 'vocab_size': self.vocab_size,
            'lowercase': True, 'pad_id': 0, 'sot_id': self.sot, 'eot_id': self.eot,
            'clean': 'ftfy + html unescape + whitespace + lower (open_clip)'}
