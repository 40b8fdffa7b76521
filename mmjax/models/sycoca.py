"""SyCoCa's text-guided masked modeling on a CoCa task: the caption's attention over the captioned
modality's patches (`attentive_masking.py`) masks the most-attended ones; the encoder sees the
rest; a light decoder (`masked_decoder.py`) cross-attending to the caption's text tokens rebuilds
the masked patches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mmjax.core.tasks import Task
from mmjax.models.attentive_masking import attentive_mask, text_patch_attention
from mmjax.models.embeddings import normalize_input
from mmjax.models.masked_encoding import gather_visible, run_encoder, scatter_back
from mmjax.models import objective_outputs
from mmjax.models.patch_targets import patch_targets


def sycoca_outputs(model, task: Task, x: jax.Array, h: jax.Array, text: tuple, rng
                   ) -> tuple[dict, dict]:
  """`x`: raw input of the captioned modality; `h [b, (1 +) n, W]`: its encoder states from the
  CoCa pass (all patches, no DropToken); `text`: (text states `[b, L, W]`, mask `[b, L]`, text
  embedding `[b, D]`). Returns `{'pred', 'target', 'mask'}` for `masked_reconstruction_loss`
  and the second encoder pass's aux."""
  m = task.caption
  embed = getattr(model, f'embed_{m}')
  patches = h[:, 1:] if model.pooling == 'cls' else h
  text_states, text_mask, text_emb = text
  attention = text_patch_attention(model.project(m, patches.astype(jnp.float32)), text_emb)
  n = patches.shape[1]
  num_masked = min(n - 1, max(1, int(round(task.sycoca_mask_ratio * n))))
  masked = attentive_mask(attention, num_masked)
  tokens, _ = embed(normalize_input(m, x).astype(model.dtype))
  seq, seq_mask, perm = gather_visible(tokens, 1 - masked, n - num_masked)
  ids = model.encoder.modality_index(m) if model.mot else None
  states, aux = run_encoder(model, seq, seq_mask, ids, m, rng=rng)
  targets, grid = patch_targets(embed, m, x)
  pred = getattr(model, f'sycoca_decoder_{m}')(scatter_back(states, perm), 1 - masked, grid,
                                               text_states, text_mask)
  return {'pred': pred, 'target': targets, 'mask': masked}, aux


@objective_outputs.register('sycoca')
class SyCoCaHook(objective_outputs.OutputHook):
  """The text's encoder tokens guide the masking (all of them: no DropToken on text); after the
  pass, `reconstruction['sycoca/<m>']` of the captioned modality and `aux['sycoca']`."""

  def encode(self, p, m, x, mask, rng):
    if m != 'text':
      return None
    h, tmask, aux = p.model.encode_tokens(m, x, mask, rng=rng)
    pooled = p.model.pool_tokens(m, h, tmask)
    p.scratch['sycoca_text'] = (h, tmask, p.model.project(m, pooled))
    return pooled, aux

  def finish(self, p):
    rng = None if p.rng is None else jax.random.fold_in(p.rng, 4099)
    rec, p.aux['sycoca'] = sycoca_outputs(p.model, p.task, *p.scratch['caption'],
                                          p.scratch['sycoca_text'], rng)
    p.extra['reconstruction'] = {f'sycoca/{p.task.caption}': rec}
