"""The tokenizer stored in an export folder, whichever kind it is: CLIP's byte-level BPE
(`tokenizer.json`), SigLIP's SentencePiece (`siglip_spiece.model`) or mmjax's SentencePiece
(`tokenizer.model`). Each has `encode(texts, length) -> (ids, mask)` and
`tokenize(texts, length) -> int32 [n, length]`."""

from __future__ import annotations

import os

from mmjax.data import clip_tokenizer, siglip_tokenizer
from mmjax.data.tokenizer import TOKENIZER_FILE, Tokenizer

FILES = (clip_tokenizer.TOKENIZER_FILE, siglip_tokenizer.TOKENIZER_FILE, TOKENIZER_FILE)


class SentencePieceTokenizer(Tokenizer):
  """mmjax's SentencePiece `Tokenizer` with `tokenize` (ids only)."""

  def __reduce__(self):
    return (SentencePieceTokenizer, (self.model_file, self.lowercase))

  def tokenize(self, texts, length: int):
    return self.encode(list(texts), length)[0]


def find(path: str, lowercase: bool = True):
  """The tokenizer stored in the folder `path`, or None when it holds none."""
  for name in FILES:
    f = os.path.join(path, name)
    if os.path.isfile(f):
      if name == clip_tokenizer.TOKENIZER_FILE:
        return clip_tokenizer.ClipTokenizer(f)
      if name == siglip_tokenizer.TOKENIZER_FILE:
        return siglip_tokenizer.SiglipTokenizer(f)
      return SentencePieceTokenizer(f, lowercase)
  return None
