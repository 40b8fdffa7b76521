"""SigLIP's SentencePiece tokenizer, id for id as transformers' `SiglipTokenizer` with
`padding='max_length', truncation=True`.

Text is canonicalised as big_vision does (lower-cased, ASCII punctuation removed, whitespace
collapsed and stripped; behind a word-boundary mark, as transformers does), encoded by the SentencePiece model, cut to `length - 1`, then the end
token `</s>` is appended and the row padded with the pad token (`</s>` too, as SigLIP was
trained). The model file is stored in an export as `siglip_spiece.model`.
"""

from __future__ import annotations

import os
import re
import string
import threading

import numpy as np
import sentencepiece as spm

from mmjax.data.errors import DataError

TOKENIZER_FILE = 'siglip_spiece.model'
_PUNCTUATION = str.maketrans('', '', string.punctuation)


def canonicalize(text) -> str:
  if isinstance(text, bytes):
    text = text.decode('utf-8')
  text = str(text).lower().translate(_PUNCTUATION)
  return re.sub(r'\s+', ' ', text).strip()


class SiglipTokenizer:
  """Batched SigLIP tokenization with the interface of `mmjax.data.tokenizer.Tokenizer`."""

  lowercase = True

  def __init__(self, model_file: str):
    if not os.path.isfile(model_file):
      raise DataError(f'SigLIP SentencePiece model {model_file!r} does not exist: pass the '
                      f'{TOKENIZER_FILE} of an imported export.')
    self.model_file = os.fspath(model_file)
    self._sp = spm.SentencePieceProcessor(model_file=self.model_file)
    self.eos = self._sp.piece_to_id('</s>')
    self.pad = self.eos
    self._unk_len = len(self._sp.encode('<unk>', out_type=str))
    self._lock = threading.Lock()

  def _pieces(self, text) -> list[int]:
    """transformers' path: '▁' + text, canonicalised, encoded behind '<unk>' (which is then
    dropped, so the model's dummy prefix never doubles the word boundary)."""
    if isinstance(text, bytes):
      text = text.decode('utf-8')
    text = canonicalize('\u2581' + str(text).replace('\u2581', ' '))
    pieces = self._sp.encode('<unk>' + text, out_type=str)[self._unk_len:]
    return [self._sp.piece_to_id(p) for p in pieces]

  def __reduce__(self):
    return (SiglipTokenizer, (self.model_file,))

  @property
  def vocab_size(self) -> int:
    return int(self._sp.get_piece_size())

  def tokenize(self, texts, length: int = 64) -> np.ndarray:
    """`texts` -> int32 `[n, length]`: pieces (cut to length - 1), `</s>`, then `</s>` padding."""
    if isinstance(texts, (str, bytes)):
      texts = [texts]
    ids = np.full((len(texts), length), self.pad, np.int32)
    for i, t in enumerate(texts):
      with self._lock:
        pieces = self._pieces(t)
      row = list(pieces[:length - 1]) + [self.eos]
      ids[i, :len(row)] = row
    return ids

  def encode(self, texts, length: int) -> tuple[np.ndarray, np.ndarray]:
    """`(ids, mask)`; the SigLIP text tower attends to padding, so the mask is all ones."""
    ids = self.tokenize(texts, length)
    return ids, np.ones_like(ids)

  def decode(self, ids) -> list[str]:
    ids = np.asarray(ids)
    rows = ids[None] if ids.ndim == 1 else ids
    return [self._sp.decode([int(i) for i in row if int(i) != self.pad]) for row in rows]

  def describe(self) -> dict:
    return {'kind': 'sentencepiece_siglip', 'model_file': self.model_file,
            'vocab_size': self.vocab_size, 'lowercase': True, 'pad_id': self.pad,
            'eos_id': self.eos, 'clean': 'lower, ASCII punctuation removed, whitespace (SigLIP)'}
