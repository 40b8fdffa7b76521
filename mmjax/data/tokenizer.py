"""SentencePiece text tokenizer: training (at dataset build) and batched encoding.

Ids: 0 = pad, 1 = unknown; no BOS/EOS is added. Lowercase policy: when `lowercase` is true
(`config.text.lowercase`, default True) every text is lowercased with `str.lower()` before
encoding, in `encode` itself, so training captions, eval captions and zero-shot prompts always
go through the same path.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import threading

import numpy as np
import sentencepiece as spm

from mmjax.data.errors import DataError

TOKENIZER_FILE = 'tokenizer.model'
PAD_ID = 0
UNK_ID = 1


def file_hash(path: str) -> str:
  """sha256 (hex) of a tokenizer model file: what a run records and datasets are compared by."""
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def train_sentencepiece(sentences, path: str, vocab_size: int = 256) -> None:
  """Trains a BPE model on `sentences` (deterministically) and writes it to `path`.

  BPE (not unigram) so that a small corpus still yields whole-word pieces up to `vocab_size`
  (an upper bound, `hard_vocab_limit=false`); unseen words fall back to subwords/characters.
  """
  model = io.BytesIO()
  spm.set_random_generator_seed(0)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(list(sentences)), model_writer=model, vocab_size=vocab_size,
      model_type='bpe', character_coverage=1.0, pad_id=PAD_ID, unk_id=UNK_ID, bos_id=-1,
      eos_id=-1, hard_vocab_limit=False, num_threads=1, minloglevel=2)
  with open(path, 'wb') as f:
    f.write(model.getvalue())


class Tokenizer:
  """Encodes batches of strings to fixed-length id/mask arrays."""

  def __init__(self, model_file: str, lowercase: bool = True):
    if not os.path.isfile(model_file):
      raise DataError(f'SentencePiece model {model_file!r} does not exist: set '
                      "config.text.tokenizer to a .model file, or '' for the dataset's own.")
    self.model_file = os.fspath(model_file)
    self.lowercase = bool(lowercase)
    self._sp = spm.SentencePieceProcessor(model_file=self.model_file)
    self._lock = threading.Lock()  # the processor is shared by loader threads
    # Captions repeat (a dataset's phrasings, eval prompts): remember recent encodings.
    self._pieces = functools.lru_cache(maxsize=1 << 16)(self._encode_one)
    if self._sp.pad_id() != PAD_ID:
      raise DataError(f'SentencePiece model {model_file!r} has pad id {self._sp.pad_id()}; '
                       f'mmjax needs pad id {PAD_ID} (train with pad_id=0).')

  def __reduce__(self):
    """Pickled as its file and flag (for loader worker processes), rebuilt on arrival."""
    return (Tokenizer, (self.model_file, self.lowercase))

  @property
  def vocab_size(self) -> int:
    return int(self._sp.get_piece_size())

  def _prepare(self, text) -> str:
    if isinstance(text, bytes):
      text = text.decode('utf-8')
    return text.lower() if self.lowercase else str(text)

  def _encode_one(self, text: str) -> tuple[int, ...]:
    with self._lock:
      return tuple(self._sp.encode(text))

  def encode(self, texts, length: int) -> tuple[np.ndarray, np.ndarray]:
    """`texts` (n strings) -> ids `[n, length]` int32 (0-padded, truncated), mask `[n, length]`
    int32 with 1 on real tokens."""
    pieces = [self._pieces(self._prepare(t)) for t in texts]
    ids = np.zeros((len(pieces), length), np.int32)
    mask = np.zeros((len(pieces), length), np.int32)
    for i, p in enumerate(pieces):
      p = p[:length]
      ids[i, :len(p)] = p
      mask[i, :len(p)] = 1
    return ids, mask

  def tokens(self, text) -> list[str]:
    """The pieces of one string, for inspection."""
    return self._sp.encode(self._prepare(text), out_type=str)

  def decode(self, ids) -> list[str]:
    """ids `[n, length]` (pads ignored) -> n strings."""
    ids = np.asarray(ids)
    rows = ids[None] if ids.ndim == 1 else ids
    return [self._sp.decode([int(i) for i in row if i != PAD_ID]) for row in rows]

  @functools.cached_property
  def sha256(self) -> str:
    return file_hash(self.model_file)

  def describe(self) -> dict:
    """What an eval report should record about the text pipeline."""
    return {'model_file': self.model_file, 'sha256': self.sha256, 'vocab_size': self.vocab_size,
            'lowercase': self.lowercase, 'pad_id': PAD_ID, 'unk_id': UNK_ID,
            'bos_eos': 'none'}
