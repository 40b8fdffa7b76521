"""Expert-parallel dropless MoE compiled for a TPU topology (libtpu, no TPU): tokens move by
`ragged-all-to-all`, each device holds a quarter of the expert weights and none is gathered."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax.core import partitioning
from mmjax.kernels import backend as kernel_backend
from mmjax.train.state import logical_axes
from moe_testing import inputs as _inputs, layer as _layer, moe_config as _cfg


def test_dropless_on_v5p_8_uses_ragged_all_to_all_and_local_experts():
  from mmjax.plan import topology  # pylint: disable=g-import-not-at-top
  try:
    devices = topology.get_topology('v5p-8')
  except Exception as e:  # libtpu missing or unusable here
    pytest.skip(f'no TPU topology available ({type(e).__name__}: {e})')
  mesh = topology.make_aot_mesh({'expert': 4}, devices)
  graphdef, state = nnx.split(_layer(_cfg('dropless', 8, 2, 1.0)))
  params = nnx.to_pure_dict(state)
  rules = partitioning.DEFAULT_RULES
  shard = jax.tree.map(lambda p, a: partitioning.named_sharding(mesh, a, rules, p.shape),
                       params, logical_axes(state), is_leaf=lambda t: isinstance(t, tuple))
  x, mask = _inputs(b=8)
  abstract = lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s)
  args = (jax.tree.map(abstract, params, shard),
          abstract(x, partitioning.batch_sharding(mesh)),
          abstract(mask, partitioning.batch_sharding(mesh)))

  def loss(p, x, m):
    with partitioning.axis_rules(mesh, rules):
      return jnp.sum(nnx.merge(graphdef, p)(x, m)[0] ** 2)

  with kernel_backend.target('tpu'):
    compiled = jax.jit(jax.grad(loss, (0, 1))).trace(*args).lower().compile()
  hlo = compiled.as_text()
  assert hlo.count('ragged-all-to-all(') >= 4, 'two exchanges forward, two backward'
  gathers = set(re.findall(r'= f32\[([\d,]*)\][^\n]*all-gather\(', hlo))
  assert not gathers & {'8,32,64', '8,64,32', '8,64', '8,32'}, gathers
  # Each device holds experts / 4 of every expert weight: [2, 32, 64] of [8, 32, 64].
  wi = [s for s in jax.tree.leaves(args[0]) if s.shape == (8, 32, 64)]
  assert wi and all(s.sharding.shard_shape(s.shape) == (2, 32, 64) for s in wi)
  assert np.isfinite(compiled.memory_analysis().temp_size_in_bytes)
