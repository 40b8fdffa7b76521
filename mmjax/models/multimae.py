"""MultiMAE masked multimodal modeling: a task's image/video/audio inputs, a few visible tokens
of each, one shared encoder, a light decoder per modality.

Per example, `task.visible_tokens` visible tokens are split across `task.multimae` by
Dirichlet-sampled shares (`multimae_masking.py`) and shown at random positions; the visible
tokens of all modalities form one sequence `[b, visible_tokens, W]` for the encoder, and each
modality's decoder (`masked_decoder.py`) predicts its masked patches from those states.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mmjax.core.tasks import Task
from mmjax.models.embeddings import normalize_input
from mmjax.models.masked_encoding import gather_visible, run_encoder, scatter_back
from mmjax.models import objective_outputs
from mmjax.models.multimae_masking import split_visible_budget, visible_mask
from mmjax.models.patch_targets import patch_targets


def multimae_outputs(model, batch: dict, task: Task, rng) -> tuple[dict, dict]:
  """`{modality: {'pred', 'target' [b, n, P], 'mask' [b, n] (1 = masked)}}` and the encoder's
  aux. `rng` draws the shares and positions (a fixed key when None: evaluation)."""
  rng = jax.random.key(0) if rng is None else rng
  mods = task.multimae
  tokens, targets, grids = {}, {}, {}
  for m in mods:
    embed = getattr(model, f'embed_{m}')
    tokens[m], _ = embed(normalize_input(m, batch[m]).astype(model.dtype))
    targets[m], grids[m] = patch_targets(embed, m, batch[m])
  b = batch[mods[0]].shape[0]
  counts = split_visible_budget(jax.random.fold_in(rng, 0), {m: tokens[m].shape[1] for m in mods},
                                task.visible_tokens, task.dirichlet_alpha, b)
  visible = {m: visible_mask(jax.random.fold_in(rng, 1 + i), counts[m], tokens[m].shape[1])
             for i, m in enumerate(mods)}
  ids = (jnp.concatenate([jnp.full(visible[m].shape, model.encoder.modality_index(m), jnp.int32)
                          for m in mods], axis=1) if model.mot else None)
  all_visible = jnp.concatenate([visible[m] for m in mods], axis=1)
  seq, seq_mask, perm = gather_visible(jnp.concatenate([tokens[m] for m in mods], axis=1),
                                       all_visible, task.visible_tokens)
  seq_ids = None if ids is None else jnp.take_along_axis(ids, perm[:, :task.visible_tokens], 1)
  states, aux = run_encoder(model, seq, seq_mask, seq_ids, mods[0],
                            rng=jax.random.fold_in(rng, 99))
  back = scatter_back(states, perm)
  out, start = {}, 0
  for m in mods:
    n = tokens[m].shape[1]
    decoder = getattr(model, f'mae_decoder_{m}')
    pred = decoder(back[:, start:start + n], visible[m], grids[m], states, seq_mask)
    out[m] = {'pred': pred, 'target': targets[m], 'mask': 1 - visible[m]}
    start += n
  return out, aux


@objective_outputs.register('multimae')
class MultiMAEHook(objective_outputs.OutputHook):
  """Its own pass (visible tokens of all its modalities): `reconstruction {m: ...}` and
  `aux['multimae']`."""

  def whole_pass(self, p):
    recon, p.aux['multimae'] = multimae_outputs(p.model, p.batch, p.task, p.rng)
    p.extra['reconstruction'] = recon
    return p.outputs()
