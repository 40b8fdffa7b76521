"""The train step: one pure function `(state, batch, task) -> (state, metrics)`.

`jax.jit` with explicit in/out shardings, the state donated, `task` static: one compiled program
per task signature. A step whose loss or gradient norm is not finite leaves parameters and
optimizer state unchanged (the step counter still advances) and reports `nonfinite = 1`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.core import modalities, partitioning
from mmjax.core.tasks import MixedTask, Task
from mmjax.models.model import pair_name
from mmjax.seeds import resolve_seeds
from mmjax.train import freezing, objectives, optimizer as optimizer_lib
from mmjax.train.state import merge


def batch_spec(task: Task | MixedTask, batch_size: int | None = None) -> dict:
  """Shapes and dtypes of the task's global batch: `{key: (shape, dtype)}`; for a MixedTask
  `{member name: {key: (shape, dtype)}}`."""
  if isinstance(task, MixedTask):
    return {m.name: batch_spec(m, batch_size) for m in task.members}
  n = task.batch_size if batch_size is None else batch_size
  r = task.resolution
  spec = {}
  for m in task.modalities:  # the arrays the modality table lists (core/modalities.py)
    for key, (shape, dtype) in modalities.array_specs(m, r).items():
      if m == 'text' and task.text_instances > 1:
        shape = (task.text_instances,) + shape
      spec[key] = ((n,) + shape, jnp.dtype(dtype))
  if task.classify:
    spec['label'] = ((n,), jnp.int32)
  for m in task.teacher_modalities:  # reinforced: stored teacher embeddings (MobileCLIP)
    spec[f'teacher_{m}'] = ((n, task.teacher_dim), jnp.float32)
  return spec


def abstract_batch(task: Task, config, mesh) -> dict:
  """ShapeDtypeStructs of the global batch, sharded over the data-parallel axes."""
  del config
  sharding = partitioning.batch_sharding(mesh)
  return jax.tree.map(lambda sd: jax.ShapeDtypeStruct(sd[0], sd[1], sharding=sharding),
                      batch_spec(task), is_leaf=lambda x: isinstance(x, tuple) and len(x) == 2
                      and isinstance(x[0], tuple))


def global_batch(local: dict, mesh, task) -> dict:
  """This process's part of the batch (numpy, leading dim = its examples) -> global arrays
  sharded over the data-parallel axes."""
  sharding = partitioning.batch_sharding(mesh)
  spec = batch_spec(task)
  if isinstance(task, MixedTask):
    return {m.name: global_batch(local[m.name], mesh, m) for m in task.members}
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(local[k]), spec[k][0])
          for k in spec}


def _tree_select(pred, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def make_train_step(config, graphdef, mesh, state_shardings):
  """Returns `step(state, batch, task) -> (state, metrics)`, jitted with `task` static."""
  opt = optimizer_lib.make_optimizer(config.optimizer)
  schedule = optimizer_lib.learning_rate_schedule(config.optimizer)
  rules = partitioning.rules_from_config(config)
  base_key = jax.random.key(resolve_seeds(config).dropout)  # DropToken, router jitter
  frozen = freezing.patterns(config.optimizer)  # frozen leaves: no gradient, kept bit for bit

  def step(state, batch, task: Task):
    with partitioning.axis_rules(mesh, rules):
      rng = jax.random.fold_in(jax.random.fold_in(base_key, 1), state['step'])

      def one_task(model, batch, task, rng):
        outputs = model(batch, task, rng=rng, train=True)
        loss, parts = objectives.task_loss(model, outputs, batch, task, config, rng=rng)
        temps = {f'temperature/{pair_name(*p)}': model.temperature(*p)
                 for p in task.contrast + task.mil_nce}
        return loss, parts | temps, outputs['aux']

      def loss_fn(params):
        model = merge(graphdef, freezing.stop_frozen(params, frozen))
        if not isinstance(task, MixedTask):
          loss, parts, aux = one_task(model, batch, task, rng)
          return loss, (parts, aux)
        loss, parts, aux = 0.0, {}, {}
        for i, member in enumerate(task.members):  # the mixed baseline: losses summed
          l, p, a = one_task(model, batch[member.name], member, jax.random.fold_in(rng, i))
          loss = loss + l
          parts |= {f'{member.name}/{k}': v for k, v in p.items()} | {f'{member.name}/loss': l}
          aux |= {f'{member.name}/{m}': v for m, v in a.items()}
        return loss, (parts, aux)

      (loss, (parts, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
      grad_norm = optax.tree.norm(grads)
      finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
      updates, opt_state = opt.update(grads, state['opt_state'], state['params'])
      params = freezing.keep_frozen(optax.apply_updates(state['params'], updates),
                                    state['params'], frozen)
      new_state = {'step': state['step'] + 1,
                   'params': _tree_select(finite, params, state['params']),
                   'opt_state': _tree_select(finite, opt_state, state['opt_state'])}
      metrics = {'loss': loss, 'grad_norm': grad_norm, 'learning_rate': schedule(state['step']),
                 'nonfinite': (~finite).astype(jnp.int32), **parts}
      moe = {m: layers for m, layers in aux.items() if layers}
      if moe:
        metrics['moe'] = moe
      return new_state, metrics

  batch_sh = partitioning.batch_sharding(mesh)
  return jax.jit(step, static_argnums=2, in_shardings=(state_shardings, batch_sh),
                 out_shardings=(state_shardings, partitioning.replicated(mesh)),
                 donate_argnums=0)


def compile_train_steps(train_step, abstract_state, tasks, config, mesh, progress=None) -> dict:
  """Ahead-of-time `lower().compile()` of every task signature: `{signature_name: compiled}`."""
  compiled = {}
  for task in tasks:
    compiled[task.signature_name] = train_step.lower(
        abstract_state, abstract_batch(task, config, mesh), task).compile()
    if progress is not None:
      progress(task)
  return compiled
