"""The switch the model uses to pick an attention / ragged-matmul implementation.

attention impl: 'xla' (pure-JAX reference), 'pallas' (flash_attention), 'cudnn'
(jax.nn.dot_product_attention on GPU), 'auto' (xla on CPU, pallas on TPU, cudnn on GPU).
ragged_matmul impl: 'xla' (jax.lax.ragged_dot), 'pallas' (grouped_matmul), 'auto' (xla on CPU
and GPU, pallas on TPU).
On GPU `auto` stays on cuDNN and XLA until the Pallas GPU (Triton) kernels have been compiled,
tested and benchmarked on a GPU; ask for them with impl='pallas'.
cudnn reads `segment_ids` as padding: 1 (any id > 0) for a prefix of real tokens, 0 for the
padding after them (the model's mask), passed as sequence lengths, never as a dense
`[batch, 1, length, length]` mask; packed sequences (several ids > 0) need 'xla' or 'pallas'.
q, k and v go to cuDNN in bfloat16 (cast from a float32 model), the output in q's dtype.
routed (BiFormer) attention under the attention impl: 'pallas' (routed_attention), 'auto'
(pallas on TPU, else the XLA reference), 'xla' and 'cudnn' (cuDNN has no routed attention) the
gather-based XLA reference.
selective_scan impl (Mamba): 'xla' (chunked associative scan), 'pallas' (selective_scan),
'auto' (pallas on TPU, xla on CPU and GPU until the kernel is benchmarked on a GPU).
"""

import jax
import jax.numpy as jnp

from mmjax.kernels import backend as backend_lib
from mmjax.kernels.attention_reference import attention_reference
from mmjax.kernels.flash_attention import check_qkv, flash_attention
from mmjax.kernels.grouped_matmul import check_grouped_matmul, grouped_matmul
from mmjax.kernels.grouped_matmul_reference import grouped_matmul_reference
from mmjax.kernels.routed_attention import routed_attention
from mmjax.kernels.routed_reference import routed_attention_reference
from mmjax.kernels.selective_scan import selective_scan_pallas
from mmjax.kernels.selective_scan_reference import selective_scan_reference

ATTENTION_IMPLS = ('auto', 'xla', 'pallas', 'cudnn')
RAGGED_MATMUL_IMPLS = ('auto', 'xla', 'pallas')
SCAN_IMPLS = ('auto', 'xla', 'pallas')


def resolve_impl(impl: str, accepted: tuple[str, ...], backend: str | None = None) -> str:
  """The implementation `impl` names on `backend`: 'auto' is 'pallas' on TPU, 'xla' on CPU,
  and on GPU 'cudnn' where `accepted` has it (attention), else 'xla' (ragged matmul)."""
  backend_lib.check_choice('impl', impl, accepted)
  if impl != 'auto':
    return impl
  platform = backend_lib.resolve_backend(backend)
  if platform == 'gpu':
    return 'cudnn' if 'cudnn' in accepted else 'xla'
  return 'pallas' if platform == 'tpu' else 'xla'


def resolve_routed_impl(impl: str, backend: str | None = None) -> str:
  """'pallas' or 'xla': the routed attention run under attention impl `impl` (see above)."""
  backend_lib.check_choice('attention impl', impl, ATTENTION_IMPLS)
  if impl == 'auto':
    return 'pallas' if backend_lib.resolve_backend(backend) == 'tpu' else 'xla'
  return 'pallas' if impl == 'pallas' else 'xla'


def routed(q, k, v, *, impl, block_size, top_k, segment_ids=None, routes=None, backend=None):
  """Routed attention `[batch, length, heads, head_dim]` by `resolve_routed_impl(impl)`; see
  `routed_attention` for the arguments."""
  if resolve_routed_impl(impl, backend) == 'pallas':
    return routed_attention(q, k, v, block_size=block_size, top_k=top_k,
                            segment_ids=segment_ids, routes=routes, backend=backend)
  return routed_attention_reference(q, k, v, block_size=block_size, top_k=top_k,
                                    segment_ids=segment_ids, routes=routes)


def attention(q, k, v, *, impl, segment_ids=None, causal=False, sm_scale=None, backend=None):
  """Softmax attention `[batch, q_len, heads, head_dim]` by the implementation `impl`.

  k, v: `[batch, kv_len, heads, head_dim]`; segment_ids `[batch, length]` keeps packed
  sequences apart; causal: token i attends to j <= i. See `flash_attention` for details.
  """
  impl = 'xla' if backend_lib.use_reference() else resolve_impl(impl, ATTENTION_IMPLS, backend)
  check_qkv(q, k, v, f'attention(impl={impl!r})')
  if impl == 'xla':
    return attention_reference(q, k, v, segment_ids=segment_ids, causal=causal,
                               sm_scale=sm_scale)
  if impl == 'pallas':
    return flash_attention(q, k, v, segment_ids=segment_ids, causal=causal, sm_scale=sm_scale,
                           backend=backend)
  platform = backend_lib.resolve_backend(backend)
  if platform != 'gpu':
    raise ValueError(f"attention impl 'cudnn' needs a GPU, but the backend is '{platform}'; "
                     "use impl='pallas' or 'xla' there.")
  return cudnn_attention(q, k, v, segment_ids=segment_ids, causal=causal, sm_scale=sm_scale)


def cudnn_attention(q, k, v, *, segment_ids=None, causal=False, sm_scale=None):
  """cuDNN fused attention (see the module docstring): bfloat16 q/k/v, padding as sequence
  lengths `sum(segment_ids > 0)` per example, output `[batch, q_len, heads, head_dim]` in q's
  dtype."""
  lengths = None
  if segment_ids is not None:
    lengths = jnp.sum(segment_ids > 0, axis=1).astype(jnp.int32)   # [batch]
  q16, k16, v16 = (x.astype(jnp.bfloat16) for x in (q, k, v))
  out = jax.nn.dot_product_attention(q16, k16, v16, scale=sm_scale, is_causal=causal,
                                     query_seq_lengths=lengths, key_value_seq_lengths=lengths,
                                     implementation='cudnn')
  return out.astype(q.dtype)


def ragged_matmul(lhs, rhs, group_sizes, *, impl, group_offset=None, transpose_rhs=False,
                  backend=None):
  """lhs [m, k] @ rhs [groups, k, n] by row group (`jax.lax.ragged_dot` semantics) -> [m, n];
  `group_offset` / `transpose_rhs` as in `grouped_matmul`."""
  impl = ('xla' if backend_lib.use_reference() else
          resolve_impl(impl, RAGGED_MATMUL_IMPLS, backend))
  check_grouped_matmul(lhs, rhs, group_sizes, f'ragged_matmul(impl={impl!r})',
                       group_offset=group_offset, transpose_rhs=transpose_rhs)
  if impl == 'xla':
    return grouped_matmul_reference(lhs, rhs, group_sizes, group_offset=group_offset,
                                    transpose_rhs=transpose_rhs)
  return grouped_matmul(lhs, rhs, group_sizes, group_offset=group_offset,
                        transpose_rhs=transpose_rhs, backend=backend)


def selective_scan(u, delta, A, B, C, D, *, impl, chunk=None, backend=None):
  """Mamba-1 selective scan `y [b, l, d]` by the implementation `impl` (see the module
  docstring); `chunk`: steps per chunk (None = each implementation's default)."""
  impl = ('xla' if backend_lib.use_reference() else
          resolve_impl(impl, SCAN_IMPLS, backend))
  kw = {} if chunk is None else {'chunk': chunk}
  if impl == 'xla':
    return selective_scan_reference(u, delta, A, B, C, D, **kw)
  return selective_scan_pallas(u, delta, A, B, C, D, backend=backend, **kw)
