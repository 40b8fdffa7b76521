"""Run a run of identical Transformer blocks as one `jax.lax.scan` instead of unrolled calls.

With `model.scan_layers`, consecutive blocks of the same kind (dense, MoE, routed attention)
are traced and compiled once per run rather than once per layer: a 24-layer pod dry run
compiles several times faster and the program is smaller. Parameters stay stored per layer
(`encoder.block_<i>...`), so checkpoints, exports and upcycling are the same either way; the
run's weights are stacked to `[layers, ...]` inside the step, an extra copy of one run's
(sharded) weights.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def group_runs(kinds: Sequence) -> tuple[tuple[int, ...], ...]:
  """Layer kinds `[k_0, k_1, ...]` -> consecutive runs of equal kind, as index tuples.

  >>> group_runs(['dense', 'dense', 'moe', 'moe', 'dense'])
  ((0, 1), (2, 3), (4,))
  """
  runs: list[list[int]] = []
  for i, kind in enumerate(kinds):
    if runs and kinds[runs[-1][-1]] == kind:
      runs[-1].append(i)
    else:
      runs.append([i])
  return tuple(tuple(r) for r in runs)


def scan_blocks(blocks: Sequence[nnx.Module], indices: Sequence[int], x: jax.Array,
                mask: jax.Array, *, rng=None, region_size=None, trailing_padding=False):
  """Applies `blocks` (same structure, layer numbers `indices`) in order with one scan.

  Each block is called as `block(x, mask, rng=fold_in(rng, index), region_size=region_size,
  trailing_padding=trailing_padding)`
  and returns `(x, aux)`, exactly as the unrolled loop calls it. Returns `(x, [aux_0, aux_1, ...])`, one aux per block.
  """
  split = [nnx.split(b) for b in blocks]
  graphdef = split[0][0]
  for layer, (other, _) in zip(indices, split):
    if other != graphdef:
      raise ValueError('scan_blocks needs blocks of one structure; got a different one at '
                       f'layer {layer}.')
  states = [state for _, state in split]
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
  layer_ids = jnp.asarray(indices, jnp.int32)

  def body(h, xs):
    state, layer = xs
    block = nnx.merge(graphdef, state)
    layer_rng = None if rng is None else jax.random.fold_in(rng, layer)
    return block(h, mask, rng=layer_rng, region_size=region_size,
                 trailing_padding=trailing_padding)

  x, aux = jax.lax.scan(body, x, (stacked, layer_ids))
  per_layer = [jax.tree.map(lambda a, j=j: a[j], aux) for j in range(len(blocks))]
  return x, per_layer
