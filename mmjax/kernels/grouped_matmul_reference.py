"""Pure-JAX grouped matmul (`jax.lax.ragged_dot`) with the kernel's `group_offset` and
`transpose_rhs`: the reference for `grouped_matmul` and the 'xla' ragged-matmul implementation."""

import jax
import jax.numpy as jnp

from mmjax.kernels.group_tiles import local_row_range


def grouped_matmul_reference(lhs, rhs, group_sizes, *, group_offset=None, transpose_rhs=False):
  """lhs `[m, k]` rows sorted by group; rhs `[local_groups, k, n]` (`[local_groups, n, k]` with
  transpose_rhs); group_sizes `[groups]` int. Rows of groups `group_offset : group_offset +
  local_groups` are multiplied by `rhs[group - group_offset]`; all other rows (other groups,
  rows past `sum(group_sizes)`) give zeros. group_offset None means 0 with all groups local.
  Returns `[m, n]` in lhs's dtype, float32 accumulation."""
  if transpose_rhs:
    rhs = jnp.swapaxes(rhs, 1, 2)
  sizes = group_sizes.astype(jnp.int32)
  if group_offset is None:
    return jax.lax.ragged_dot(lhs, rhs, sizes, preferred_element_type=jnp.float32
                              ).astype(lhs.dtype)
  local = rhs.shape[0]
  offset = jnp.asarray(group_offset, jnp.int32).reshape(())
  begin, end = local_row_range(sizes, offset, local, lhs.shape[0])
  ends = jnp.clip(jnp.cumsum(sizes), 0, lhs.shape[0])
  clipped = ends - jnp.concatenate([jnp.zeros((1,), jnp.int32), ends[:-1]])
  local_sizes = jax.lax.dynamic_slice_in_dim(clipped, offset, local)
  # Bring the local rows to the top, multiply, move them back; other rows are zero.
  shifted = jnp.roll(lhs, -begin, axis=0)
  out = jax.lax.ragged_dot(shifted, rhs, local_sizes, preferred_element_type=jnp.float32)
  out = jnp.roll(out, begin, axis=0)
  rows = jnp.arange(lhs.shape[0])[:, None]
  return jnp.where((rows >= begin) & (rows < end), out, 0).astype(lhs.dtype)
