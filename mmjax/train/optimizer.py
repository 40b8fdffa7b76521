"""AdamW with linear warmup + cosine decay, a weight-decay mask and global-norm clipping.

No decay on norms, biases, embeddings (token and position tables), CLS tokens and temperatures:
decay applies to matrices of the encoder, projections and heads only. Parameters matched by
`config.optimizer.freeze` get none of it and no state (mmjax/train/freezing.py).
"""

from __future__ import annotations

import jax
import optax

from mmjax.train import freezing

_NO_DECAY_NAMES = ('token_embedding', 'pos_', 'cls_', 'log_temperature', 'scale', 'bias')


def learning_rate_schedule(cfg) -> optax.Schedule:
  """`cfg` is `config.optimizer`: peak `learning_rate`, `warmup_steps`, `decay_steps`,
  `end_learning_rate_factor`."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
      decay_steps=max(cfg.decay_steps, cfg.warmup_steps + 1),
      end_value=cfg.learning_rate * cfg.end_learning_rate_factor)


def decay_mask(params) -> dict:
  """True for the parameters that get weight decay."""
  def keep(path, leaf):
    names = [getattr(k, 'key', str(k)) for k in path]
    if any(str(n).startswith(_NO_DECAY_NAMES) for n in names):
      return False
    return getattr(leaf, 'ndim', 0) >= 2
  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(cfg) -> optax.GradientTransformation:
  """`cfg` is `config.optimizer` (`name` must be 'adamw'); with `cfg.freeze` patterns the frozen
  parameters go to `optax.set_to_zero()` (no state) and the rest to clipping + AdamW."""
  if cfg.name != 'adamw':
    raise ValueError(f"config.optimizer.name {cfg.name!r} is not supported; use 'adamw'.")
  chain = []
  if cfg.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  chain.append(optax.adamw(learning_rate_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                           weight_decay=cfg.weight_decay, mask=decay_mask))
  pats = freezing.patterns(cfg)
  if not pats:
    return optax.chain(*chain)
  return optax.multi_transform({freezing.TRAINED: optax.chain(*chain),
                                freezing.FROZEN: optax.set_to_zero()}, freezing.labels(pats))
