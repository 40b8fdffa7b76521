"""Work items of a grouped matmul: one per (group, row tile) that the group's rows touch.

Rows `[m]` are sorted by group, so group g owns rows `ends[g] - sizes[g] : ends[g]`. Cutting rows
into tiles of `tile_m`, a tile may hold several groups and a group span several tiles; each
overlap is one work item, listed by group (and so also by tile). Only the `num_groups` groups
from `group_offset` on get items (a device's local experts; rows of other groups get none), and
an item's `group` counts from the offset. The list has a static length
`row_tiles + num_groups - 1`; unused trailing items repeat the last real tile and group with an
empty row range, so they add nothing and trigger no new copies.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class GroupTiles(NamedTuple):
  group: jax.Array        # [items] group of each work item, counted from group_offset
  tile: jax.Array         # [items] row tile of each work item (non-decreasing)
  lo: jax.Array           # [items] first row of the item's group (global row index)
  hi: jax.Array           # [items] one past its last row; lo == hi for unused items
  tile_start: jax.Array   # [row_tiles + 1] items of row tile t: tile_start[t]:tile_start[t+1]
  group_start: jax.Array  # [num_groups + 1] items of group g: group_start[g]:group_start[g+1]


def local_row_range(group_sizes: jax.Array, group_offset, num_groups: int, num_rows: int):
  """(first row, one past the last row) held by groups `group_offset : + num_groups`."""
  ends = jnp.clip(jnp.cumsum(group_sizes.astype(jnp.int32)), 0, num_rows)
  starts = jnp.concatenate([jnp.zeros((1,), jnp.int32), ends[:-1]])
  offset = jnp.asarray(group_offset, jnp.int32).reshape(())
  return starts[offset], ends[offset + num_groups - 1]


def group_tiles(group_sizes: jax.Array, num_rows: int, tile_m: int, group_offset=0,
                num_groups: int | None = None) -> GroupTiles:
  """Work items for groups `group_offset : group_offset + num_groups` (None: all) of
  `group_sizes [total_groups]` over `num_rows` rows (a multiple of tile_m)."""
  groups = group_sizes.shape[0] if num_groups is None else num_groups
  row_tiles = num_rows // tile_m
  num_items = row_tiles + groups - 1
  all_ends = jnp.clip(jnp.cumsum(group_sizes.astype(jnp.int32)), 0, num_rows)
  all_starts = jnp.concatenate([jnp.zeros((1,), jnp.int32), all_ends[:-1]])
  offset = jnp.asarray(group_offset, jnp.int32).reshape(())
  ends = jax.lax.dynamic_slice_in_dim(all_ends, offset, groups)
  starts = jax.lax.dynamic_slice_in_dim(all_starts, offset, groups)
  nonempty = ends > starts
  first = starts // tile_m
  count = jnp.where(nonempty, (ends - 1) // tile_m - first + 1, 0)
  cum = jnp.cumsum(count)
  total = cum[-1]

  item = jnp.arange(num_items, dtype=jnp.int32)
  used = item < total
  group = jnp.minimum(jnp.searchsorted(cum, item, side='right'), groups - 1).astype(jnp.int32)
  tile = first[group] + item - (cum[group] - count[group])
  last_real = jnp.maximum(total - 1, 0)
  group = jnp.where(used, group, group[last_real])
  tile = jnp.minimum(jnp.where(used, tile, tile[last_real]), row_tiles - 1).astype(jnp.int32)
  lo = jnp.where(used, starts[group], 0)
  hi = jnp.where(used, ends[group], 0)
  tile_ids = jnp.arange(row_tiles + 1, dtype=jnp.int32)
  tile_start = jnp.searchsorted(jnp.where(used, tile, row_tiles), tile_ids, side='left')
  group_start = jnp.concatenate([jnp.zeros((1,), jnp.int32), cum.astype(jnp.int32)])
  return GroupTiles(group, tile, lo.astype(jnp.int32), hi.astype(jnp.int32),
                    tile_start.astype(jnp.int32), group_start)
