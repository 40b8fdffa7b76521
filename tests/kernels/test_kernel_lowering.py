"""The GPU (Triton) and TPU (Mosaic) kernel paths lower without an accelerator attached.

GPU: `lower(lowering_platforms=('cuda',))` runs the Pallas -> Triton lowering on this host.
TPU: with libtpu installed, the kernels are compiled for a v5e topology ahead of time.
"""

import jax
import jax.numpy as jnp
import pytest

from mmjax.kernels import flash_attention, grouped_matmul, routed_attention


def _programs(backend):
  """(name, fn, arg shapes) for forward+backward of each kernel on `backend`."""
  x = jax.ShapeDtypeStruct((1, 300, 2, 64), jnp.bfloat16)   # padded: not a power of two
  seg = jax.ShapeDtypeStruct((1, 300), jnp.int32)
  lhs, rhs = jax.ShapeDtypeStruct((100, 64), jnp.bfloat16), jax.ShapeDtypeStruct(
      (3, 64, 80), jnp.bfloat16)
  sizes = jax.ShapeDtypeStruct((3,), jnp.int32)

  def grads(fn, n):
    return lambda *a: jax.grad(lambda *d: jnp.sum(fn(*d, *a[n:]).astype(jnp.float32)),
                               argnums=tuple(range(n)))(*a[:n])

  flash = lambda q, k, v, s: flash_attention(q, k, v, segment_ids=s, causal=True,
                                             backend=backend, interpret=False)
  routed = lambda q, k, v: routed_attention(q, k, v, block_size=60, top_k=2, backend=backend,
                                            interpret=False)
  gmm = lambda a, b, s: grouped_matmul(a, b, s, backend=backend, interpret=False)
  # Block skipping from lengths and segments, grouped-query k/v (1 head for 2 query heads).
  kv1 = jax.ShapeDtypeStruct((1, 300, 1, 64), jnp.bfloat16)
  lengths = jax.ShapeDtypeStruct((1,), jnp.int32)
  flash_skip = lambda q, k, v, s, n: flash_attention(q, k, v, segment_ids=s, lengths=n,
                                                     backend=backend, interpret=False)
  # Local experts 1..2 of 4 (group_offset), weights [groups, n, k] (transpose_rhs).
  rhs_t, sizes4 = jax.ShapeDtypeStruct((2, 80, 64), jnp.bfloat16), jax.ShapeDtypeStruct(
      (4,), jnp.int32)
  gmm_local = lambda a, b, s: grouped_matmul(a, b, s, group_offset=1, transpose_rhs=True,
                                             backend=backend, interpret=False)
  return [('flash', grads(flash, 3), (x, x, x, seg)), ('routed', grads(routed, 3), (x, x, x)),
          ('gmm', grads(gmm, 2), (lhs, rhs, sizes)),
          ('flash_skip_gqa', grads(flash_skip, 3), (x, kv1, kv1, seg, lengths)),
          ('gmm_local_transposed', grads(gmm_local, 2), (lhs, rhs_t, sizes4))]


@pytest.mark.parametrize('index', range(5))
def test_gpu_path_lowers_to_triton(index):
  name, fn, shapes = _programs('gpu')[index]
  text = jax.jit(fn).trace(*shapes).lower(lowering_platforms=('cuda',)).as_text()
  assert text.count('xla.gpu.triton') >= 3, name


def test_tpu_path_compiles_for_a_topology():
  topologies = pytest.importorskip('jax.experimental.topologies')
  try:
    device = topologies.get_topology_desc(platform='tpu', topology_name='v5e:2x2').devices[0]
  except Exception as e:  # pylint: disable=broad-except
    pytest.skip(f'no libtpu topology here: {type(e).__name__}')
  sharding = jax.sharding.SingleDeviceSharding(device)
  for name, fn, shapes in _programs('tpu'):
    placed = [jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding) for s in shapes]
    compiled = jax.jit(fn).trace(*placed).lower().compile()
    assert compiled is not None, name
