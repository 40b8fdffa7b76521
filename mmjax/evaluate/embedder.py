"""Frozen-model inference for evaluation: pooled features and common-space embeddings on a mesh.

One jitted program per (modality, input shape) runs `model.encode` (pooled features
`[batch, width]`, as `model.features`) and `model.project` (L2-normalised embeddings
`[batch, dim]`, as `model.embed`) in a single pass. Inputs are this host's rows, sharded over
the data-parallel axes; outputs come back replicated, so every host holds whole numpy arrays.
"""

from __future__ import annotations

import jax
import numpy as np

from mmjax.core import modalities as modalities_lib, partitioning
from mmjax.evaluate import zero_shot
from mmjax.evaluate.errors import EvalError
from mmjax.train import state as state_lib

# modalities whose eval batches carry a clip axis when num_clips > 1 (core/modalities.py)
CLIPPED = tuple(m.name for m in modalities_lib.all_records() if m.clipped)
EXTRAS = ('index', 'valid', 'label', 'text', 'text_mask')


class Embedder:
  """`graphdef` + `params` (a pure dict, already sharded or not) evaluated on `mesh`."""

  def __init__(self, config, graphdef, params, mesh):
    self.graphdef, self.params, self.mesh = graphdef, params, mesh
    self.rules = partitioning.rules_from_config(config)
    self.batch_sharding = partitioning.batch_sharding(mesh)
    self.replicated = partitioning.replicated(mesh)
    self.dp = partitioning.data_parallel_size(mesh)
    self.modalities = tuple(state_lib.merge(graphdef, params).spec.modalities)
    self._fns = {}

  def _fn(self, modality: str | None):
    if modality not in self._fns:
      def run(params, inputs):
        if modality is None:  # gathers host-local extras into whole, replicated arrays
          return inputs
        with partitioning.axis_rules(self.mesh, self.rules):
          model = state_lib.merge(self.graphdef, params)
          mask = modalities_lib.get(modality).mask
          pooled, _ = model.encode(modality, inputs[modality], inputs.get(mask) if mask else None)
          return {'features': pooled, 'embed': model.project(modality, pooled)}
      self._fns[modality] = jax.jit(run, out_shardings=self.replicated)
    return self._fns[modality]

  def _global(self, local: np.ndarray) -> jax.Array:
    """This host's rows `[b, ...]` -> the global array `[b * processes, ...]`."""
    local = np.asarray(local)
    shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
    return jax.make_array_from_process_local_data(self.batch_sharding, local, shape)

  def run(self, modality: str, inputs: dict) -> dict[str, np.ndarray]:
    """Host-local `inputs` (the modality's array, plus `text_mask` for text; rows a multiple of
    the per-host data-parallel size) -> global numpy `features` `[n, width]`, `embed` `[n, dim]`."""
    if modality not in self.modalities:
      raise EvalError(f"the checkpoint's model has no {modality!r} input; it was trained on "
                       f'{", ".join(self.modalities)}: drop {modality!r} from the evaluation.')
    out = self._fn(modality)(self.params, {k: self._global(v) for k, v in inputs.items()})
    return jax.tree.map(np.asarray, out)

  def run_extras(self, extras: dict) -> dict[str, np.ndarray]:
    """Host-local per-example arrays (index, valid, label, ...) -> whole numpy arrays, in the
    same row order as the outputs of `run`."""
    out = self._fn(None)(None, {k: self._global(v) for k, v in extras.items()})
    return jax.tree.map(np.asarray, out)

  def collect(self, batches, modalities, num_clips: int = 1) -> dict:
    """Every valid example of `batches`, in dataset order, in one pass over the data.

    Returns `{modality: {'embed': [n, dim], 'features': [n, width]}}` for each of `modalities`
    (several clips: embeddings averaged as unit vectors and renormalised, features averaged),
    plus `label` `[n]`, `text` and `text_mask` `[n, length]` when the batches hold them.
    """
    parts: dict[str, list] = {}
    for batch in batches:
      extras = self.run_extras({k: batch[k] for k in EXTRAS if k in batch})
      keep = extras.pop('valid').astype(bool)
      for key, value in extras.items():
        parts.setdefault(key, []).append(value[keep])
      for m in modalities:
        x = np.asarray(batch[m])
        clips = num_clips if (m in CLIPPED and num_clips > 1) else 1
        inputs = {m: x.reshape((-1,) + x.shape[2:]) if clips > 1 else x}
        mask = modalities_lib.get(m).mask
        if mask and m != 'text':  # a non-text modality's own mask (point clouds)
          inputs[mask] = np.asarray(batch[mask])
        out = self.run(m, inputs)
        if clips > 1:
          emb = out['embed'].reshape(-1, clips, out['embed'].shape[-1])
          out = {'embed': zero_shot.average_clips(emb),
                 'features': out['features'].reshape(emb.shape[0], clips, -1).mean(axis=1)}
        for key, value in out.items():
          parts.setdefault(f'{m}/{key}', []).append(value[keep])
    if not parts:
      raise EvalError('the evaluation split holds no examples: choose a split with data.')
    data = {k: np.concatenate(v) for k, v in parts.items()}
    order = np.argsort(data.pop('index'), kind='stable')
    out: dict = {}
    for key, value in data.items():
      if '/' in key:
        m, kind = key.split('/')
        out.setdefault(m, {})[kind] = value[order]
      else:
        out[key] = value[order]
    return out

  def embed_text(self, ids: np.ndarray, mask: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Embeddings `[n, dim]` of token ids / masks `[n, length]` (the same on every host)."""
    n = ids.shape[0]
    hosts, host = jax.process_count(), jax.process_index()
    chunk = max(self.dp, -(-int(batch_size) // self.dp) * self.dp)
    chunk = -(-chunk // hosts) * hosts  # whole rows per host
    out = []
    for start in range(0, n, chunk):
      rows = np.arange(start, start + chunk)
      rows = np.where(rows < n, rows, 0)  # pad with row 0; dropped below
      per = chunk // hosts
      local = rows[host * per:(host + 1) * per]
      emb = self.run('text', {'text': ids[local], 'text_mask': mask[local]})
      out.append(emb['embed'][:min(chunk, n - start)])
    return np.concatenate(out)
