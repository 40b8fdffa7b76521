"""A teacher for MobileCLIP-style reinforcement: an exported model that embeds inputs.

  teacher = Teacher('runs/demo/export')
  teacher.embed('image', {'image': uint8 [n, S, S, 3]})            # -> float32 [n, D]
  teacher.embed('text', {'text': ids [n, L], 'text_mask': [n, L]})  # -> float32 [n, D]

The params come from the export (orbax or safetensors, `mmjax.core.exports.params_io`), upcast to
float32; input sizes from its `export_report.json` (else its config); text is tokenised with
the export's own `tokenizer.model`. Rows are padded to a multiple of `rows`, so one program is
compiled per modality.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from flax import nnx

from mmjax.core.exports import layout
from mmjax.core.exports.params_io import ExportError, is_params_export, load_params
from mmjax.core.tasks import tasks_from_config
from mmjax.data import stored_tokenizer
from mmjax.models.model import build_model
from mmjax.config.defaults import setting


def _sizes(path: str, config) -> dict:
  report = os.path.join(path, layout.REPORT)
  if os.path.isfile(report):
    with open(report) as f:
      return dict(json.load(f).get('input_sizes', {}))
  sizes = {}
  for t in tasks_from_config(config):
    for key, value in vars(t.resolutions[0]).items():
      if value is not None:
        sizes.setdefault(key, int(value))
  return sizes


class Teacher:
  """See module docstring."""

  def __init__(self, path: str, rows: int = 64):
    if not is_params_export(path):
      raise ExportError(f'--teacher {path!r} holds no exported params: pass the --output of '
                        'python -m mmjax.export for a trained run.')
    params, self.config = load_params(path)
    self.path, self.rows = path, int(rows)
    self.params = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
    self.graphdef = nnx.split(nnx.eval_shape(lambda: build_model(self.config, nnx.Rngs(0))))[0]
    model = nnx.merge(self.graphdef, self.params)
    self.modalities = tuple(model.spec.modalities)
    self.embed_dim = int(self.config.model.embed_dim)
    self.temperature = (float(model.temperature('image', 'text'))
                        if ('image', 'text') in model.spec.pairs else None)
    self.sizes = _sizes(path, self.config)
    lowercase = bool(setting(setting(self.config, 'text'), 'text.lowercase'))
    # mmjax's SentencePiece, or an imported model's own (CLIP BPE, SigLIP SentencePiece)
    self.tokenizer = stored_tokenizer.find(path, lowercase)
    self._fns = {}

  def embed(self, modality: str, inputs: dict) -> np.ndarray:
    """Common-space embeddings `[n, D]` float32 of `inputs` (arrays with `n` rows)."""
    if modality not in self._fns:
      graphdef = self.graphdef
      self._fns[modality] = jax.jit(lambda p, x: nnx.merge(graphdef, p).embed(x, modality))
    n = len(next(iter(inputs.values())))
    pad = -n % self.rows
    padded = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) if pad else v
              for k, v in inputs.items()}
    return np.asarray(self._fns[modality](self.params, padded), np.float32)[:n]

  def embed_texts(self, texts: list[str]) -> np.ndarray:
    ids, mask = self.tokenizer.encode(texts, self.sizes['text_length'])
    return self.embed('text', {'text': ids, 'text_mask': mask})
