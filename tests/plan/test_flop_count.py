"""FLOPs counted from a jaxpr: scans, gradients, remat, convolutions, cond and shard_map."""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from mmjax.plan import flop_count


def test_flops_of_scan_count_every_iteration():
  w = jax.ShapeDtypeStruct((10, 64, 64), jnp.float32)
  x = jax.ShapeDtypeStruct((32, 64), jnp.float32)
  layers = lambda w, x: jax.lax.scan(lambda c, wi: (c @ wi, None), x, w)[0]
  count = flop_count.count_flops(layers, w, x)
  assert count.flops == 10 * 2 * 32 * 64 * 64
  assert not count.has_remat and not count.has_while


def test_flops_of_mlp_gradient_and_remat():
  b, d, h = 8, 16, 32
  params = {'w1': jnp.ones((d, h)), 'w2': jnp.ones((h, d))}
  x = jnp.ones((b, d))
  loss = lambda p, x: jnp.sum(jnp.tanh(x @ p['w1']) @ p['w2'])
  plain = flop_count.count_flops(jax.grad(loss), params, x)
  assert plain.flops == 5 * 2 * b * d * h  # forward 2 matmuls, backward dW2, dh, dW1
  remat = flop_count.count_flops(jax.grad(jax.checkpoint(loss)), params, x)
  assert remat.has_remat and remat.flops > plain.flops  # + the recomputed forward matmul(s)


def test_flops_of_conv_cond_and_shard_map():
  img = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
  kernel = jax.ShapeDtypeStruct((4, 4, 3, 8), jnp.float32)
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (4, 4), 'VALID',
                                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  assert flop_count.count_flops(conv, img, kernel).flops == 2 * (2 * 4 * 4 * 8) * (4 * 4 * 3)
  a = jax.ShapeDtypeStruct((8, 8), jnp.float32)
  branchy = lambda p, a: jax.lax.cond(p, lambda a: a @ a @ a, lambda a: a @ a, a)
  assert flop_count.count_flops(branchy, True, a).flops == 2 * 2 * 8**3
  mesh = jax.make_mesh((len(jax.devices()),), ('x',))
  sharded = jax.ShapeDtypeStruct((8 * len(jax.devices()), 8), jnp.float32,
                                 sharding=NamedSharding(mesh, P('x')))
  w = jax.ShapeDtypeStruct((8, 8), jnp.float32, sharding=NamedSharding(mesh, P()))
  per_shard = jax.shard_map(lambda x, w: x @ w, mesh=mesh, in_specs=(P('x'), P()),
                            out_specs=P('x'))
  assert flop_count.count_flops(per_shard, sharded, w).flops == 2 * sharded.shape[0] * 8 * 8
