"""Serialized StableHLO embedding functions, one per modality, via `jax.export`.

Each function maps prepared inputs with a symbolic batch `b` to L2-normalised embeddings
`[b, embed_dim]` float32: `image [b, S, S, 3]`, `video [b, T, S, S, 3]`, `audio [b, N]`,
`text, text_mask [b, L]` int32. Parameters are baked in as constants (in the exported dtype,
upcast to float32 inside), so a function is self-contained: no params argument, no mmjax.
They are lowered for CPU, CUDA and TPU with the pure-XLA attention (no Pallas kernels).
Running one needs only jax and numpy:

  import jax, numpy as np
  fn = jax.export.deserialize(bytearray(open('OUT/stablehlo/image.jax_exported', 'rb').read()))
  emb = np.asarray(fn.call(np.zeros((7, 32, 32, 3), np.float32)))    # [7, embed_dim]

Baked constants make each file about the size of the weights it uses (the shared encoder is
in every file); very large models are better served from the safetensors file instead.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mmjax.core.exports import layout
from mmjax.export import inputs as inputs_lib

PLATFORMS = ('cpu', 'cuda', 'tpu')


def _upcast(params: dict) -> dict:
  return jax.tree.map(lambda p: jnp.asarray(p).astype(jnp.float32)
                      if jnp.issubdtype(p.dtype, jnp.floating) else jnp.asarray(p), params)


def export_modality(graphdef, params: dict, modality: str, sizes: dict,
                    platforms=PLATFORMS) -> jax.export.Exported:
  """The `jax.export.Exported` embedding function of one modality (params as constants)."""
  specs = inputs_lib.input_specs(modality, sizes, jax.export.symbolic_shape('b')[0])
  names = tuple(specs)
  consts = jax.tree.map(np.asarray, params)

  def embed(*args):
    model = nnx.merge(graphdef, _upcast(consts))
    return model.embed(dict(zip(names, args)), modality)

  embed.__name__ = f'embed_{modality}'
  args = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in specs.values()]
  return jax.export.export(jax.jit(embed), platforms=tuple(platforms))(*args)


def save(directory: str, graphdef, params: dict, modalities, sizes: dict,
         signature: dict, platforms=PLATFORMS) -> None:
  """Writes `<modality>.jax_exported` for each modality and `signature.json`."""
  os.makedirs(directory)
  for m in modalities:
    exported = export_modality(graphdef, params, m, sizes, platforms)
    with open(os.path.join(directory, layout.stablehlo_file(m)), 'wb') as f:
      f.write(exported.serialize())
  layout.write_json(os.path.join(directory, layout.SIGNATURE), signature)


def load(directory: str) -> dict:
  """`{modality: jax.export.Exported}` of a StableHLO export directory (`.call(*inputs)`)."""
  signature = layout.read_json(os.path.join(directory, layout.SIGNATURE))
  out = {}
  for m, spec in signature['functions'].items():
    with open(os.path.join(directory, spec['file']), 'rb') as f:
      out[m] = jax.export.deserialize(bytearray(f.read()))
  return out
