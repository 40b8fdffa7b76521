"""Training a 4M discrete tokenizer (an FSQ autoencoder, models/discrete_tokenizer.py) on one
modality of a dataset, with the numbers its report carries:

- reconstruction: mean squared error in the autoencoder's input space (pixels in [-1, 1] or
  standardised log-mel) on the train and held-out split, and PSNR for images;
- codebook usage: the share of the `prod(levels)` codes the held-out tokens use and the
  perplexity of their distribution (FSQ has no codebook to collapse, but an encoder can still
  use few codes);
- round trip: the share of tokens that survive tokens -> decode -> encode.

`ensure_tokenizer` is what a 4M run calls when its config names no tokenizer: it trains one into
a cache folder beside the dataset (under a lock), or reuses the one already there.
"""

from __future__ import annotations

import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mmjax import paths
from mmjax.data import sources, transforms
from mmjax.data.readers import decode_media, is_encoded
from mmjax.models import discrete_tokenizer as dt
from mmjax.models import tokenizer_files

log = logging.getLogger(__name__)


def read_inputs(dataset: str, split: str, modality: str, data_dir: str | None = None,
                audio_samples: int = 0) -> np.ndarray:
  """Every example's raw `modality` input of a split: uint8 images `[n, H, W, 3]` or int16 audio
  `[n, audio_samples]` (the clip's first samples, zero-padded), as the train loader sends them."""
  source = sources.open_source(dataset, split, data_dir)
  if modality not in source.features:
    raise sources.DataError(f'dataset {dataset!r} has no {modality!r} feature (it has '
                            f'{sorted(source.features)}): choose another --modality or dataset.')
  col = source.read(np.arange(len(source)), [modality])[modality]
  if modality == 'image':
    return decode_media(col, 'image') if is_encoded(col[0]) else np.stack(list(col))
  wave = transforms.stack_ragged(col) if col.dtype == object else col
  return transforms.crop_audio(wave, np.zeros(len(wave), np.int64), audio_samples)


def _metrics(params, spec, x: np.ndarray, batch: int = 256) -> dict:
  """Reconstruction MSE, code histogram and round-trip agreement over `x` (autoencoder inputs)."""
  recon = jax.jit(lambda p, v: dt.reconstruct(p, spec, v))
  enc = jax.jit(lambda p, v: dt.reconstruct(p, spec, v)[1])
  err, counts, same, total = 0.0, np.zeros(dt.vocab_size(spec), np.int64), 0, 0
  for i in range(0, len(x), batch):
    v = jnp.asarray(x[i:i + batch])
    y, ids = recon(params, v)
    err += float(jnp.square(y - v).mean(axis=(1, 2, 3)).sum())
    counts += np.bincount(np.asarray(ids).ravel(), minlength=counts.size)
    again = enc(params, y)                       # decode -> encode
    same += int((again == ids).sum())
    total += ids.size
  p = counts / counts.sum()
  nz = p[p > 0]
  mse = err / len(x)
  out = {'mse': mse, 'codebook_usage': float((counts > 0).mean()),
         'perplexity': float(np.exp(-(nz * np.log(nz)).sum())), 'round_trip': same / total}
  if spec['modality'] == 'image':
    out['psnr_db'] = float(10 * np.log10(4.0 / max(mse, 1e-12)))  # signal range [-1, 1]
  return out


def train_tokenizer(spec: dict, train_x: np.ndarray, test_x: np.ndarray, *, steps: int = 1500,
                    batch_size: int = 64, learning_rate: float = 2e-3, seed: int = 0) -> tuple:
  """-> (params, report). `train_x`/`test_x` are raw inputs (uint8 images / int16 audio)."""
  prep = jax.jit(lambda v: dt.preprocess(spec, v))
  xtr = np.concatenate([np.asarray(prep(train_x[i:i + 256])) for i in range(0, len(train_x), 256)])
  if spec['modality'] == 'audio':  # standardise log-mel by the train split's statistics
    spec = dict(spec, mean=float(xtr.mean()), std=float(xtr.std() + 1e-6))
    xtr = (xtr - spec['mean']) / spec['std']
  prep = jax.jit(lambda v: dt.preprocess(spec, v))
  xte = np.concatenate([np.asarray(prep(test_x[i:i + 256])) for i in range(0, len(test_x), 256)])
  params = dt.init_params(jax.random.key(seed), spec)
  opt = optax.adam(optax.cosine_decay_schedule(learning_rate, max(steps, 1), 0.05))
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state, v):
    def loss_fn(p):
      y, _ = dt.reconstruct(p, spec, v)
      return jnp.square(y - v).mean()
    loss, g = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  start, loss = time.perf_counter(), float('nan')
  for i in range(steps):
    idx = rng.integers(0, len(xtr), min(batch_size, len(xtr)))
    params, opt_state, loss = step(params, opt_state, jnp.asarray(xtr[idx]))
    if (i + 1) % max(1, steps // 5) == 0:
      log.info('tokenizer step %d/%d: loss %.4f', i + 1, steps, float(loss))
  metrics = {f'test_{k}': v for k, v in _metrics(params, spec, xte).items()}
  metrics['train_mse'] = _metrics(params, spec, xtr[:1024])['mse']
  metrics['final_batch_loss'] = float(loss)
  report = {'steps': steps, 'batch_size': batch_size, 'seconds': time.perf_counter() - start,
            'vocab_size': dt.vocab_size(spec), 'tokens_per_example': dt.num_tokens(spec),
            'metrics': metrics}
  return jax.device_get(params), spec, report


def train_and_save(modality: str, dataset: str, output: str, *, data_dir=None, spec=None,
                   steps: int = 1500, seed: int = 0, splits=('train', 'test')) -> dict:
  """Reads the splits, trains, writes the export to `output`; returns the report."""
  samples = spec.get('audio_samples', 0) if spec else 0
  train_x = read_inputs(dataset, splits[0], modality, data_dir, samples)
  test_x = read_inputs(dataset, splits[1], modality, data_dir, samples)
  params, spec, report = train_tokenizer(spec, train_x, test_x, steps=steps, seed=seed)
  report.update(dataset=dataset, splits=list(splits), modality=modality)
  tokenizer_files.save(output, params, spec, report)
  return report


def cache_dir(dataset: str, data_dir: str | None, spec: dict, steps: int) -> str:
  """Where a run's automatically trained tokenizer lives: beside the dataset, named by what
  decides its weights (modality, dataset, levels, channels, input sizes, steps)."""
  root = sources.digits_builder.data_root(data_dir)
  sizes = spec.get('image_size') or spec.get('audio_samples')
  name = (f'{spec["modality"]}_{"x".join(map(str, spec["levels"]))}_'
          f'{"-".join(map(str, spec["channels"]))}_{sizes}_{steps}steps')
  safe = dataset.replace('/', '_').replace(':', '_')
  return os.path.join(root, 'fourm_tokenizers', safe, name)


def ensure_tokenizer(dataset: str, data_dir: str | None, spec: dict, steps: int) -> str:
  """The cached tokenizer for `spec` on `dataset`, trained first when absent; returns its path."""
  out = cache_dir(dataset, data_dir, spec, steps)
  if tokenizer_files.is_tokenizer(out):
    return out
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with paths.file_lock(out + '.lock'):
    if not tokenizer_files.is_tokenizer(out):
      log.info('training the %s tokenizer into %s (%d steps)', spec['modality'], out, steps)
      train_and_save(spec['modality'], dataset, out, data_dir=data_dir, spec=spec, steps=steps)
  return out
