"""Per-tile math shared by the attention kernels (flash and routed), on GPU, TPU and interpret.

A tile is one query block `[block_q, head_dim]` against one key block `[block_k, head_dim]`.
Scores and softmax statistics are float32; a masked key gets probability exactly 0, so a row
with no allowed key yields zeros rather than NaN.
"""

import dataclasses

import jax.numpy as jnp
from jax import lax

MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)
_NN = (((1,), (0,)), ((), ()))  # [m, k] @ [k, n]
_NT = (((1,), (1,)), ((), ()))  # [m, k] @ [n, k]^T
_TN = (((0,), (0,)), ((), ()))  # [k, m]^T @ [k, n]


@dataclasses.dataclass(frozen=True)
class Tiling:
  """Static description of one attention kernel launch.

  kv_len: keys at padded positions >= kv_len are padding (None: no such padding).
  kv_block_valid: keys whose offset inside their block is >= this are padding (None: none).
  driver: 'gpu' (one program per output block, loop over its pairs inside; also used for
    interpret mode on CPU) or 'tpu' (a grid step per pair, VMEM scratch, scalar prefetch).
  batched_tables: the pair tables have one row per batch element (else one shared row).
  q_per_kv: query heads per key/value head (grouped-query attention; 1 = multi-head): query
    head h reads key/value head h // q_per_kv, which is never repeated in memory.
  """
  block_q: int
  block_k: int
  sm_scale: float
  causal: bool
  kv_len: int | None
  kv_block_valid: int | None
  driver: str
  interpret: bool
  batched_tables: bool
  num_warps: int = 4
  num_stages: int = 2
  q_per_kv: int = 1


def dot(a, b, dims=_NN):
  return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


def dot_nt(a, b):
  return dot(a, b, _NT)


def dot_tn(a, b):
  return dot(a, b, _TN)


def tile_mask(t: Tiling, q_block, k_block, q_seg=None, k_seg=None):
  """bool [block_q, block_k] (True = key allowed), or None when nothing is masked.

  q_seg: [block_q, 1] and k_seg: [1, block_k] segment ids, or None.
  """
  shape = (t.block_q, t.block_k)
  mask = None

  def both(a, b):
    return b if a is None else jnp.logical_and(a, b)

  if t.kv_block_valid is not None or t.kv_len is not None or t.causal:
    col = lax.broadcasted_iota(jnp.int32, shape, 1)
    if t.kv_block_valid is not None:
      mask = col < t.kv_block_valid
    k_pos = k_block * t.block_k + col
    if t.kv_len is not None:
      mask = both(mask, k_pos < t.kv_len)
    if t.causal:
      q_pos = q_block * t.block_q + lax.broadcasted_iota(jnp.int32, shape, 0)
      mask = both(mask, q_pos >= k_pos)
  if q_seg is not None:
    mask = both(mask, q_seg == k_seg)
  return mask


def scores(t: Tiling, q, k, mask):
  """Scaled float32 logits [block_q, block_k] with masked entries at MASK_VALUE."""
  s = dot_nt(q, k) * t.sm_scale
  return s if mask is None else jnp.where(mask, s, MASK_VALUE)


def softmax_init(t: Tiling, head_dim: int):
  m = jnp.full((t.block_q, 1), MASK_VALUE, jnp.float32)
  l = jnp.zeros((t.block_q, 1), jnp.float32)
  acc = jnp.zeros((t.block_q, head_dim), jnp.float32)
  return m, l, acc


def softmax_step(s, mask, v, m_prev, l_prev, acc_prev):
  """One online-softmax update with a key block; returns the new (m, l, acc)."""
  m_new = jnp.maximum(m_prev, jnp.max(s, axis=1, keepdims=True))
  p = jnp.exp(s - m_new)
  if mask is not None:
    p = jnp.where(mask, p, 0.0)
  alpha = jnp.exp(m_prev - m_new)
  l_new = alpha * l_prev + jnp.sum(p, axis=1, keepdims=True)
  acc_new = alpha * acc_prev + dot(p.astype(v.dtype), v)
  return m_new, l_new, acc_new


def softmax_finish(m, l, acc):
  """Normalised output [block_q, head_dim] (zeros for empty rows) and logsumexp [block_q, 1]."""
  empty = l == 0.0
  out = acc / jnp.where(empty, 1.0, l)
  lse = jnp.where(empty, 0.0, m + jnp.log(jnp.where(empty, 1.0, l)))
  return out, lse


def probs(t: Tiling, q, k, lse, mask):
  """Recomputed probabilities [block_q, block_k] from the saved logsumexp [block_q, 1]."""
  p = jnp.exp(dot_nt(q, k) * t.sm_scale - lse)
  return p if mask is None else jnp.where(mask, p, 0.0)


def grad_logits(p, do, v, delta):
  """dS = P * (dO V^T - delta), float32 [block_q, block_k]; delta = rowsum(dO * O)."""
  return p * (dot_nt(do, v) - delta)


def pair_flags(table_ref, row, p, num_pairs):
  """Whether pair p is the first / last of its run of equal `table_ref[row, :]` entries."""
  cur = table_ref[row, p]
  prev = table_ref[row, jnp.maximum(p - 1, 0)]
  nxt = table_ref[row, jnp.minimum(p + 1, num_pairs - 1)]
  first = jnp.logical_or(p == 0, prev != cur)
  last = jnp.logical_or(p == num_pairs - 1, nxt != cur)
  return first, last


def segment_layouts(t: Tiling, q_seg, k_seg):
  """Kernel layouts of segment ids `[batch, q_len]`, `[batch, kv_len]` (None passes through).

  GPU: `[batch, q_len, 1]` and `[batch, 1, kv_len]`. TPU: queries as lane-dense rows
  `[batch, q_blocks, 1, block_q]` (read back as a column), keys as `[batch, 1, kv_len]`.
  """
  if q_seg is None:
    return None, None
  if t.driver == 'tpu':
    return q_seg.reshape(q_seg.shape[0], -1, 1, t.block_q), k_seg[:, None, :]
  return q_seg[:, :, None], k_seg[:, None, :]


def pair_count(start_ref, row):
  """Pairs listed in table row `row` (entries past it repeat the last pair and are skipped)."""
  return start_ref[row, start_ref.shape[1] - 1]


def kv_head(t: Tiling, head):
  """The key/value head that query head `head` reads (a truncating divide, which Mosaic
  lowers in index maps; heads are >= 0)."""
  return head if t.q_per_kv == 1 else lax.div(head, t.q_per_kv)


def table_row(t: Tiling, batch_index):
  return batch_index if t.batched_tables else 0

