"""The switch the model uses to pick an attention, routed-attention, ragged-matmul
or selective-scan implementation.

attention impl: 'xla' (pure-JAX reference), 'pallas' (flash_attention), 'cudnn'
(jax.nn.dot_product_attention on GPU), 'auto' (xla on CPU, pallas on TPU, cudnn on GPU where
it takes the head dim, else xla).
ragged_matmul impl: 'xla' (jax.lax.ragged_dot), 'pallas' (grouped_matmul), 'auto' (xla on CPU
and GPU, pallas on TPU).
On GPU `auto` stays on cuDNN and XLA until the Pallas GPU (Triton) kernels have been compiled,
tested and benchmarked on a GPU; ask for them with impl='pallas'.
cudnn honours the same masks as the other paths: `lengths` alone (padding trailing: the model
passes them only where it knows so) become cuDNN's sequence lengths, so it skips the padding;
`segment_ids` (padding anywhere, packed sequences) become a boolean `[batch, 1, length, length]`
mask, cuDNN's bias input, with `lengths` folded in. q, k and v go to cuDNN in bfloat16 (cast from
a float32 model), the output in q's dtype; cuDNN needs a head dim that is a multiple of 8 and at
most 128 (256 on Hopper), which `cudnn_supports` says and the config checks enforce.
routed (BiFormer) attention under the attention impl: 'pallas' (routed_attention), 'auto'
(pallas on TPU, else the XLA reference), 'xla' and 'cudnn' (cuDNN has no routed attention) the
gather-based XLA reference.
selective_scan impl (Mamba): 'xla' (chunked associative scan), 'pallas' (selective_scan),
'auto' (pallas on TPU, xla on CPU and GPU until the kernel is benchmarked on a GPU).
"""

import functools

import jax
import jax.numpy as jnp

from mmjax.core.choices import ATTENTION_IMPLS, RAGGED_MATMUL_IMPLS, SCAN_IMPLS
from mmjax.kernels import backend as backend_lib
from mmjax.kernels.attention_reference import attention_reference
from mmjax.kernels.flash_attention import check_qkv, flash_attention
from mmjax.kernels.grouped_matmul import check_grouped_matmul, grouped_matmul
from mmjax.kernels.grouped_matmul_reference import grouped_matmul_reference
from mmjax.kernels.routed_attention import routed_attention
from mmjax.kernels.routed_reference import routed_attention_reference
from mmjax.kernels.selective_scan import selective_scan_pallas
from mmjax.kernels.selective_scan_reference import selective_scan_reference



def resolve_impl(impl: str, accepted: tuple[str, ...], backend: str | None = None,
                 head_dim: int | None = None) -> str:
  """The implementation `impl` names on `backend`: 'auto' is 'pallas' on TPU, 'xla' on CPU,
  and on GPU 'cudnn' where `accepted` has it (attention) and cuDNN takes `head_dim` (None =
  not known here), else 'xla'."""
  backend_lib.check_choice('impl', impl, accepted)
  if impl != 'auto':
    return impl
  platform = backend_lib.resolve_backend(backend)
  if platform == 'gpu':
    ok = head_dim is None or cudnn_supports(head_dim)
    return 'cudnn' if 'cudnn' in accepted and ok else 'xla'
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


def attention(q, k, v, *, impl, segment_ids=None, lengths=None, causal=False, sm_scale=None,
              backend=None):
  """Softmax attention `[batch, q_len, heads, head_dim]` by the implementation `impl`.

  k, v: `[batch, kv_len, kv_heads, head_dim]` (kv_heads dividing heads: grouped-query);
  segment_ids `[batch, length]` keeps packed sequences (and padding) apart; lengths `[batch]`:
  positions >= lengths[b] are padding that attends and is attended by nothing (flash skips
  their blocks); causal: token i attends to j <= i. See `flash_attention` for details.
  """
  impl = ('xla' if backend_lib.use_reference()
          else resolve_impl(impl, ATTENTION_IMPLS, backend, head_dim=q.shape[-1]))
  check_qkv(q, k, v, f'attention(impl={impl!r})')
  if impl == 'xla':
    return attention_reference(q, k, v, segment_ids=segment_ids, lengths=lengths, causal=causal,
                               sm_scale=sm_scale)
  if impl == 'pallas':
    return flash_attention(q, k, v, segment_ids=segment_ids, lengths=lengths, causal=causal,
                           sm_scale=sm_scale, backend=backend)
  platform = backend_lib.resolve_backend(backend)
  if platform != 'gpu':
    raise ValueError(f"attention impl 'cudnn' needs a GPU, but the backend is '{platform}'; "
                     "use impl='pallas' or 'xla' there.")
  return cudnn_attention(q, k, v, segment_ids=segment_ids, lengths=lengths, causal=causal,
                         sm_scale=sm_scale)


def cudnn_supports(head_dim: int) -> bool:
  """Whether cuDNN's fused attention takes this head dim on every GPU it runs on (a multiple of
  8, at most 128; Hopper also takes up to 256)."""
  return head_dim % 8 == 0 and 0 < head_dim <= 128


# The cuDNN call, one name so that a CPU test can stand in an emulation of its documented
# semantics and check the arguments this module derives from the masks.
_cudnn_dot_product_attention = functools.partial(jax.nn.dot_product_attention,
                                                 implementation='cudnn')


def cudnn_arguments(segment_ids, lengths, q_len: int):
  """The masking arguments for cuDNN, from the model's masks (see the module docstring):
  `(pad, mask, seq_lengths, real)`: `pad` extra masked positions that make the length even
  (cuDNN's bias path needs it), `mask [batch, 1, L, L]` bool or None, `seq_lengths [batch]`
  int32 or None, `real [batch, L]` bool or None (False where the output must be zero)."""
  if segment_ids is None:
    if lengths is None:
      return 0, None, None, None
    seq = lengths.astype(jnp.int32)
    real = jnp.arange(q_len)[None] < seq[:, None]
    return 0, None, seq, real
  pad = q_len % 2
  seg = segment_ids.astype(jnp.int32)
  real = jnp.ones(seg.shape, bool)
  if lengths is not None:
    real = jnp.arange(q_len)[None] < lengths.astype(jnp.int32)[:, None]
  # Padding past `lengths` and the parity pad share an id no real token has; they attend one
  # another (no empty softmax row for cuDNN) and their outputs are zeroed after.
  outside = jnp.iinfo(jnp.int32).min
  seg = jnp.pad(jnp.where(real, seg, outside), ((0, 0), (0, pad)), constant_values=outside)
  real = jnp.pad(real, ((0, 0), (0, pad)))
  mask = seg[:, None, :, None] == seg[:, None, None, :]
  return pad, mask, None, real


def cudnn_attention(q, k, v, *, segment_ids=None, lengths=None, causal=False, sm_scale=None):
  """cuDNN fused attention (see the module docstring): bfloat16 q/k/v, trailing padding as
  sequence lengths, any other layout as a mask; output `[batch, q_len, heads, head_dim]` in
  q's dtype, zero at padding."""
  if (segment_ids is not None or lengths is not None) and q.shape[1] != k.shape[1]:
    raise ValueError('cudnn_attention: segment_ids and lengths need equal q and kv lengths, '
                     f'got {q.shape[1]} and {k.shape[1]}.')
  q_len = q.shape[1]
  pad, mask, seq, real = cudnn_arguments(segment_ids, lengths, q_len)
  q16, k16, v16 = (jnp.pad(x.astype(jnp.bfloat16), ((0, 0), (0, pad), (0, 0), (0, 0)))
                   for x in (q, k, v))
  out = _cudnn_dot_product_attention(q16, k16, v16, mask=mask, scale=sm_scale,
                                     is_causal=causal, query_seq_lengths=seq,
                                     key_value_seq_lengths=seq)
  if real is not None:
    out = jnp.where(real[:, :, None, None], out, 0)
  return out[:, :q_len].astype(q.dtype)


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
