"""Flat, stable parameter names: the nested params dict's keys joined by '.'.

The name of a parameter is its path in the pure params dict (`nnx.to_pure_dict` of the model),
keys joined with '.'. Keys are Python identifiers (module attribute names), so a name splits back
into its path unambiguously. Examples, for width W, heads H, head size K, MLP size M, common
space D, patch P:

  embed_image.proj.kernel            [P*P*3, W]    patch embedding (pixels in [-1, 1])
  embed_image.pos_h / .pos_w         [grid, W]     factorised position embeddings
  embed_text.token_embedding         [vocab, W]
  encoder.block_0.attn.qkv.kernel    [W, 3, H, K]  (per_modality sharing: encoder_<modality>.…)
  encoder.block_0.attn.out.kernel    [H, K, W]
  encoder.block_0.mlp.wi.kernel      [W, M]        (MoE blocks: [experts, W, M] + mlp.router.kernel)
  encoder.block_0.norm1.scale        [W]
  encoder.norm.scale                 [W]
  proj_image.kernel                  [W, D]        into the common L2-normalised space
  head_<dataset>.kernel              [W, classes]  classifier heads of labelled tasks
  log_temperature_image_text         []            contrastive temperature (log)
  mae_decoder_image.block_0.…        light patch decoders of MultiMAE tasks (sycoca_decoder_<m>:
                                                   SyCoCa's), config.model.mae_decoder wide
  fourm.tok_<m> / .pos_<m> / .mod_<m>  [V_m | n_m | 1, W]  4M token, position, modality tables
  fourm.code_<m>                  [d_m, W]  4M: FSQ code coordinates -> embedding (image/audio)
  fourm.block_0.… / fourm.head.kernel  [W, sum V_m]        4M target decoder and joint head
"""

from __future__ import annotations

import numpy as np

SEPARATOR = '.'
SCHEME = ("mmjax flat names: the nested params dict's keys joined by '.', e.g. "
          "encoder.block_0.attn.qkv.kernel; split on '.' to rebuild the nested dict that "
          "nnx.merge(graphdef, params) takes (documented in mmjax/core/exports/param_names.py).")


def flatten(params: dict, prefix: str = '') -> dict[str, object]:
  """Nested params dict -> `{flat name: leaf}` in sorted name order."""
  out = {}
  for key in sorted(params, key=str):
    name = f'{prefix}{key}'
    if SEPARATOR in str(key):
      raise ValueError(f'parameter key {name!r} contains {SEPARATOR!r}; it cannot be named flat.')
    value = params[key]
    if isinstance(value, dict):
      out.update(flatten(value, name + SEPARATOR))
    else:
      out[name] = value
  return out


def unflatten(flat: dict[str, object]) -> dict:
  """`{flat name: leaf}` -> the nested params dict (string keys)."""
  out: dict = {}
  for name, value in flat.items():
    *parents, last = name.split(SEPARATOR)
    node = out
    for key in parents:
      node = node.setdefault(key, {})
    node[last] = value
  return out


def describe(flat: dict[str, object]) -> list[dict]:
  """`[{'name', 'shape', 'dtype'}]` of flat leaves (arrays or shape/dtype structs)."""
  return [{'name': n, 'shape': list(np.shape(v) if not hasattr(v, 'shape') else v.shape),
           'dtype': str(np.dtype(v.dtype)) if hasattr(v, 'dtype') else str(np.asarray(v).dtype)}
          for n, v in flat.items()]
