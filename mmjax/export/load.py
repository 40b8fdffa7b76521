"""Reading exports back as models: an NNX model from exported params, or StableHLO callables.

  params, config = load_params('OUT')          # mmjax.core.exports.params_io (re-used here)
  model = nnx.merge(graphdef(config), params)
  model, config = load_model('OUT')            # the same, params upcast to float32
  fns = load_stablehlo('OUT')                  # {'image': fn, ...}; fn(x) -> [b, D]
  tok = load_tokenizer('OUT')                  # tok.tokenize(texts, length) -> int32 [n, length]
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from mmjax.core.exports import layout
from mmjax.core.exports.params_io import ExportError, load_params
from mmjax.data import stored_tokenizer
from mmjax.export import stablehlo
from mmjax.models.model import build_model


def graphdef(config):
  """The model's graph definition for `config` (no parameter is allocated)."""
  return nnx.split(nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0))))[0]


def load_model(path: str):
  """-> (NNX model with the exported params upcast to float32, config)."""
  params, config = load_params(path)
  params = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
  return nnx.merge(graphdef(config), params), config


def load_stablehlo(path: str) -> dict:
  """`{modality: callable}` of a StableHLO export (root or `stablehlo/`): image, video and
  audio take one array, text takes `(ids, mask)`; each returns `[b, embed_dim]` float32."""
  d = layout.stablehlo_dir(path)
  if d is None:
    raise ExportError(f'{path} holds no StableHLO export (stablehlo/signature.json): export '
                      'with --format=stablehlo.')
  return {m: exp.call for m, exp in stablehlo.load(d).items()}


def load_tokenizer(path: str):
  """The tokenizer stored in an export: CLIP's byte-level BPE (`tokenizer.json`), SigLIP's
  SentencePiece (`siglip_spiece.model`) or mmjax's SentencePiece (`tokenizer.model`). Each has
  `tokenize(texts, length) -> int32 [n, length]` and `encode(texts, length) -> (ids, mask)`."""
  tok = stored_tokenizer.find(path)
  if tok is None:
    raise ExportError(f'{path} holds no tokenizer ({", ".join(stored_tokenizer.FILES)}): pass '
                      'an export written by mmjax.export or tools.import_weights.')
  return tok
