"""Linear probe: a softmax classifier (logistic regression) trained on frozen pooled features.

`linear_probe` chooses the L2 strength on a validation split (the dataset's, or a held-out
fifth of the training split), then retrains on train + validation with it and scores the test
split; `train_linear_probe` trains with one given L2.

Features are standardised with the train split's mean and std, then a linear layer
`[width, classes]` is trained with Adam on cross-entropy + a small L2 penalty on the weights, in
shuffled minibatches (one compiled scan per epoch: 100 epochs over a few thousand examples take
well under a second after compiling). Deterministic given `seed`: zero initialisation and a
numpy generator for the shuffling order.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax.evaluate import metrics


def _check(x, y, num_classes: int, name: str) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(x, np.float32)
  y = np.asarray(y, np.int64).reshape(-1)
  if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
    raise ValueError(f'{name} features {x.shape} and labels {y.shape} must be a non-empty '
                     '[n, width] and [n].')
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f'{name} labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}].')
  return x, y


def _loss(params, x, y, l2: float):
  logits = x @ params['w'] + params['b']
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return ce + 0.5 * l2 * jnp.sum(params['w'] ** 2)


@functools.partial(jax.jit, static_argnames=('learning_rate', 'l2'))
def _epoch(params, opt_state, x, y, batches, *, learning_rate, l2):
  """One Adam pass over `batches` `[steps, batch]` of row indices into x `[n, width]`, y `[n]`."""
  optimizer = optax.adam(learning_rate)

  def step(carry, idx):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(_loss)(params, x[idx], y[idx], l2)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
  return params, opt_state, losses.mean()


def train_linear_probe(train_x, train_y, test_x, test_y, num_classes: int, *, epochs: int = 100,
                       batch_size: int = 256, learning_rate: float = 1e-2, l2: float = 1e-4,
                       seed: int = 0) -> dict[str, float]:
  """Trains on `[n, width]` features with labels `[n]`; returns test `top1`, `train_top1`, `loss`."""
  train_x, train_y = _check(train_x, train_y, num_classes, 'train')
  test_x, test_y = _check(test_x, test_y, num_classes, 'test')
  if train_x.shape[1] != test_x.shape[1]:
    raise ValueError(f'train width {train_x.shape[1]} differs from test width {test_x.shape[1]}.')
  mean = train_x.mean(axis=0)
  std = train_x.std(axis=0) + 1e-6
  train_x, test_x = (train_x - mean) / std, (test_x - mean) / std

  n, width = train_x.shape
  batch_size = max(1, min(int(batch_size), n))
  steps = -(-n // batch_size)
  params = {'w': jnp.zeros((width, num_classes), jnp.float32),
            'b': jnp.zeros((num_classes,), jnp.float32)}
  opt_state = optax.adam(learning_rate).init(params)
  x, y = jnp.asarray(train_x), jnp.asarray(train_y, jnp.int32)
  rng = np.random.default_rng(seed)
  loss = jnp.nan
  for _ in range(max(1, int(epochs))):
    order = rng.permutation(n)
    order = np.concatenate([order, order[:steps * batch_size - n]])  # wrap to full batches
    params, opt_state, loss = _epoch(params, opt_state, x, y, order.reshape(steps, batch_size),
                                     learning_rate=float(learning_rate), l2=float(l2))

  w, b = np.asarray(params['w']), np.asarray(params['b'])
  return {
      'top1': metrics.topk_accuracy(test_x @ w + b, test_y, 1),
      'train_top1': metrics.topk_accuracy(train_x @ w + b, train_y, 1),
      'loss': float(loss),
  }


L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
HOLD_OUT = 0.2


def split_validation(n: int, fraction: float = HOLD_OUT, seed: int = 0):
  """Deterministic (train rows, validation rows) of `n` training examples."""
  order = np.random.default_rng(seed).permutation(n)
  k = max(1, int(round(n * fraction)))
  return np.sort(order[k:]), np.sort(order[:k])


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int, val_x=None, val_y=None, *,
                 l2_grid=L2_GRID, seed: int = 0, **kwargs) -> dict:
  """Logistic regression with L2 chosen on validation top-1 (smallest L2 on ties).

  train/val/test features `[n, width]` and labels `[n]`; without val_x, a held-out fifth of the
  training rows validates. Returns test `top1`, `train_top1`, the chosen `l2` and `val_top1` per
  L2 of the grid.
  """
  train_x, train_y = np.asarray(train_x), np.asarray(train_y)
  if val_x is None:
    fit, val = split_validation(len(train_y), seed=seed)
    val_x, val_y, fit_x, fit_y = train_x[val], train_y[val], train_x[fit], train_y[fit]
  else:
    fit_x, fit_y = train_x, train_y
  sweep = {}
  for l2 in l2_grid:
    sweep[l2] = train_linear_probe(fit_x, fit_y, val_x, val_y, num_classes, l2=l2, seed=seed,
                                   **kwargs)['top1']
  best = max(l2_grid, key=lambda l2: (sweep[l2], -l2))
  final = train_linear_probe(np.concatenate([fit_x, val_x]), np.concatenate([fit_y, val_y]),
                             test_x, test_y, num_classes, l2=best, seed=seed, **kwargs)
  return {'top1': final['top1'], 'train_top1': final['train_top1'], 'l2': float(best),
          'val_top1': {f'{l2:g}': v for l2, v in sweep.items()}}
