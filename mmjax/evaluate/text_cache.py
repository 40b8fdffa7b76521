"""Zero-shot classifiers of (class names, templates) sets, embedded once per checkpoint.

Several benchmarks share one set (ImageNet and its shifts: 1,000 names x 80 templates), and a
re-run of the same checkpoint needs the same prompts again: each set's classifier `[classes, dim]`
is kept in memory and, in a single-process run with a cache directory, stored as
`<dir>/<key>.npy`. The key hashes the checkpoint's fingerprint (step + a checksum of every
parameter), the tokenizer, the text length, the class names and the templates, so a different
checkpoint or prompt set never reads a stale file.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.evaluate import templates as templates_lib
from mmjax.evaluate import zero_shot


@jax.jit
def _sums(params):
  """Each parameter's sum and sum of |x| in float32 (one compiled program per model)."""
  return jax.tree.map(lambda x: jnp.stack([jnp.sum(x.astype(jnp.float32)),
                                           jnp.sum(jnp.abs(x.astype(jnp.float32)))]), params)


def params_fingerprint(params, step: int) -> str:
  """A short hash of the step and of each parameter's sum and sum of |x| (float32)."""
  sums = _sums(params)
  leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(sums))
  text = json.dumps([int(step)] + [[jax.tree_util.keystr(k), np.asarray(v).tolist()]
                                   for k, v in leaves])
  return hashlib.sha256(text.encode()).hexdigest()[:16]


class TextCache:
  """`classifier(class_names, templates, length)` -> weights `[classes, dim]`, embedded once."""

  def __init__(self, embedder, tokenizer, fingerprint: str, directory: str | None = None,
               batch_size: int = 256):
    self.embedder, self.tokenizer, self.fingerprint = embedder, tokenizer, fingerprint
    self.directory = directory if jax.process_count() == 1 else None  # hosts must agree
    self.batch_size = batch_size
    self._memory: dict[str, np.ndarray] = {}
    self.hits = self.misses = 0

  def key(self, class_names, templates, length: int) -> str:
    text = json.dumps([self.fingerprint, self.tokenizer.describe(), self.tokenizer.lowercase,
                       int(length), list(class_names), list(templates)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]

  def classifier(self, class_names, templates, length: int) -> np.ndarray:
    templates = templates_lib.check_templates(templates)
    key = self.key(class_names, templates, length)
    path = os.path.join(self.directory, f'{key}.npy') if self.directory else None
    if key not in self._memory and path and os.path.isfile(path):
      self._memory[key] = np.load(path)
    if key in self._memory:
      self.hits += 1
      return self._memory[key]
    self.misses += 1
    prompts = [p for row in templates_lib.build_prompts(class_names, templates) for p in row]
    ids, mask = self.tokenizer.encode(prompts, length)
    flat = self.embedder.embed_text(ids, mask, self.batch_size)
    weights = zero_shot.classifier_weights(flat.reshape(len(class_names), len(templates), -1))
    self._memory[key] = weights
    if path:
      os.makedirs(self.directory, exist_ok=True)
      tmp = f'{path}.{os.getpid()}.tmp.npy'
      np.save(tmp, weights)
      os.replace(tmp, path)
    return weights
