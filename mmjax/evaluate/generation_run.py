"""Any-to-any generation runs of a 4M model and their measures; the command line is
`python -m mmjax.evaluate.generate` (its docstring says what is written and measured).
"""

from __future__ import annotations

import os
import wave

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from mmjax import config as config_lib
from mmjax.core.exports import layout
from mmjax.core import partitioning
from mmjax.core.exports import params_io
from mmjax.core.tasks import Resolution, tasks_from_config
from mmjax.data import pipeline
from mmjax.data.digits.render import CLASS_NAMES, TEMPLATES
from mmjax.data.tokenizer import Tokenizer
from mmjax.evaluate import fourm_generation as gen
from mmjax.evaluate.audio_inversion import log_mel_to_waveform
from mmjax.evaluate.caption_metrics import names_digit
from mmjax.evaluate.errors import EvalError
from mmjax.evaluate.restore import restore_params
from mmjax.models import tokenizer_files
from mmjax.models.audio_features import log_mel_spectrogram
from mmjax.models.model import build_model
from mmjax.train import state as state_lib


def _fourm_task(config):
  tasks = [t for t in tasks_from_config(config) if t.fourm]
  if not tasks:
    raise EvalError('the run has no 4M task (fourm=...): pass the --workdir of a '
                    'configs/fourm.py run.')
  return tasks[0]


class Classifier:
  """Zero-shot digit classifier from a params export of a contrastive model: class embeddings
  are the mean of the digit's prompts in every training phrasing."""

  def __init__(self, path: str):
    params, config = params_io.load_params(path)
    params = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
    graphdef = nnx.split(nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0))))[0]
    self.model = nnx.merge(graphdef, params)
    tok = os.path.join(path, layout.TOKENIZER)
    tokenizer = Tokenizer(tok) if os.path.isfile(tok) else pipeline.load_tokenizer(config)
    prompts = [t.format(n) for n in CLASS_NAMES for t in TEMPLATES]
    ids, mask = tokenizer.encode(prompts, int(config.model.max_text_length))
    emb = np.asarray(self.model.embed({'text': ids, 'text_mask': mask}, 'text'))
    emb = emb.reshape(len(CLASS_NAMES), len(TEMPLATES), -1).mean(1)
    self.weights = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    self.modalities = self.model.spec.modalities

  def __call__(self, modality: str, x: np.ndarray) -> np.ndarray:
    if modality not in self.modalities:
      raise EvalError(f'the classifier has no {modality!r} embedding ({self.modalities}).')
    return (np.asarray(self.model.embed({modality: x}, modality)) @ self.weights.T).argmax(-1)


class PixelProbe:
  """`--classifier=pixel_probe`: an independent classifier that needs no other run, a logistic
  regression on the train split's raw inputs (image pixels, or audio log-mel at the run's
  front end), fitted here in seconds."""

  def __init__(self, config, task, modality: str):
    from sklearn.linear_model import LogisticRegression  # optional heavy dependency, lazily
    self.modality, self.audio = modality, config.model.audio
    r = task.resolutions[0]
    res = Resolution(image_size=r.image_size if modality == 'image' else None,
                     audio_samples=r.audio_samples if modality == 'audio' else None)
    xs, ys = [], []
    for batch in pipeline.make_eval_batches(task.dataset, 'train', (modality,), res, config,
                                            batch_size=256):
      keep = np.asarray(batch['valid'])
      xs.append(self._features(np.asarray(batch[modality])[keep]))
      ys.append(np.asarray(batch['label'])[keep])
    self.probe = LogisticRegression(max_iter=300, C=0.5).fit(np.concatenate(xs), np.concatenate(ys))
    self.modalities = (modality,)

  def _features(self, x: np.ndarray) -> np.ndarray:
    if self.modality == 'image':
      return x.reshape(len(x), -1).astype(np.float32) / 255.0
    a = self.audio
    mel = log_mel_spectrogram(jnp.asarray(x, jnp.float32) / 32768.0, sample_rate=a.sample_rate,
                              window=a.window, hop=a.hop, num_mels=a.num_mels)
    return np.asarray(mel).reshape(len(x), -1) / 10.0

  def __call__(self, modality: str, x: np.ndarray) -> np.ndarray:
    return self.probe.predict(self._features(np.asarray(x)))


def _write_png(path: str, image: np.ndarray) -> None:
  Image.fromarray(np.asarray(image, np.uint8)).save(path)


def _write_wav(path: str, wave_f32: np.ndarray, rate: int) -> None:
  with wave.open(path, 'wb') as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes((np.clip(wave_f32, -1, 1) * 32767).astype('<i2').tobytes())


def _grid(path: str, items: list, labels: list[str], kind: str) -> None:
  """Up to 8 columns of images / spectrograms / captions, each titled."""
  from matplotlib.figure import Figure  # Agg canvas, no pyplot (as mmjax/evaluate/plots.py)
  n = len(items)
  cols = min(8, n)
  rows = max(1, -(-n // cols))
  fig = Figure(figsize=(1.6 * cols, 1.8 * rows))
  for i, (item, label) in enumerate(zip(items, labels)):
    ax = fig.add_subplot(rows, cols, i + 1)
    if kind == 'image':
      ax.imshow(item)
    elif kind == 'audio':
      ax.imshow(np.asarray(item).T, origin='lower', aspect='auto')
    ax.set_title(label, fontsize=7)
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def run_generation(workdir: str, src: str, tgt: str, *, step=None, num: int = 200,
                   steps: int = 8, temperature: float = 1.0, classifier: str = '',
                   seed: int = 0, output: str = '') -> dict:
  config = config_lib.load_run_config(workdir)
  task = _fourm_task(config)
  if src == tgt or src not in task.fourm or tgt not in task.fourm:
    raise EvalError(f'--from={src} --to={tgt}: choose two different modalities of the run\'s '
                    f'4M task ({", ".join(task.fourm)}).')
  if classifier == 'pixel_probe' and tgt != 'text':
    clf = PixelProbe(config, task, tgt)
  else:
    clf = Classifier(classifier) if classifier and tgt != 'text' else None
  if classifier and classifier != 'pixel_probe' and not params_io.is_params_export(classifier):
    raise EvalError(f'--classifier={classifier} holds no params export: pass the export of a '
                    'contrastive run, e.g. runs/demo/export from `make demo`.')
  mesh = partitioning.make_mesh(dict(data=1, fsdp=1, tensor=1, expert=1),
                                devices=jax.devices()[:1])
  step, graphdef, params = restore_params(config, workdir, mesh, step)
  model = state_lib.merge(graphdef, params)
  r = task.resolution if len(task.resolutions) == 1 else task.resolutions[0]
  length = int(r.text_length or 16)
  res = Resolution(image_size=r.image_size if 'image' in (src, tgt) else None,
                   audio_samples=r.audio_samples if 'audio' in (src, tgt) else None,
                   text_length=length if 'text' in (src, tgt) else None)
  batches = pipeline.make_eval_batches(task.dataset, 'test', (src, tgt), res, config,
                                       batch_size=50)
  tokenizer = pipeline.load_tokenizer(config)
  out_dir = output or os.path.join(workdir, 'generate', f'{src}_to_{tgt}')
  os.makedirs(out_dir, exist_ok=True)
  rng = jax.random.key(seed)
  spec = model.fourm.tokenizer(tgt)[1] if tgt != 'text' else None
  detok = (jax.jit(lambda p, ids: state_lib.merge(graphdef, p).fourm.detokenize(tgt, ids))
           if spec else None)
  samples, hits, asked, labels, acc, recon, grid, grid_labels = [], [], [], [], [], [], [], []
  real_hits = []
  seen = 0
  for bi, batch in enumerate(batches):
    valid = np.asarray(batch['valid'])
    if seen >= num or not valid.any():
      break
    if 'label' not in batch:
      raise EvalError(f'{task.dataset} has no labels: the generation measures need the digit '
                      'of each example (use mmjax_digits).')
    label = np.asarray(batch['label'])
    src_ids, src_avail = gen.source_tokens(graphdef, params, src, batch)
    tgt_ids, tgt_avail = gen.source_tokens(graphdef, params, tgt, batch)
    keep = valid.copy()
    keep[np.cumsum(valid) > num - seen] = False
    acc.append((gen.token_accuracy(graphdef, params, src, src_ids, src_avail, tgt,
                                   tgt_ids, tgt_avail * keep[:, None]), int(keep.sum())))
    if tgt == 'text':
      out = gen.generate_text(graphdef, params, src, src_ids, src_avail, length,
                              tokenizer.vocab_size)
      texts = tokenizer.decode(out)
      for i in np.flatnonzero(keep):
        ok = names_digit(texts[i], int(label[i]))
        hits.append(ok)
        samples.append({'index': int(batch['index'][i]), 'label': int(label[i]),
                        'caption': texts[i], 'right_digit': bool(ok)})
        if len(grid) < 32 and src in ('image', 'audio'):
          grid.append(batch[src][i] if src == 'image' else None)
          grid_labels.append(texts[i][:22])
    else:
      ids, _ = gen.generate_tokens(graphdef, params, src, src_ids, src_avail, tgt,
                                   tgt_ids.shape[1], steps, jax.random.fold_in(rng, bi),
                                   temperature)
      media = np.asarray(detok(params, jnp.asarray(ids)))
      real = np.asarray(detok(params, tgt_ids))          # the tokenizer's own reconstruction
      if tgt == 'image':
        x = np.asarray(batch['image'], np.float32) / 127.5 - 1
        recon.append(float(((real.astype(np.float32) / 127.5 - 1 - x) ** 2)[keep].mean()))
        inputs = media
      else:
        inputs = np.stack([np.clip(log_mel_to_waveform(
            m, sample_rate=spec['sample_rate'], window=spec['window'], hop=spec['hop'],
            samples=spec['audio_samples']) * 32767, -32768, 32767).astype(np.int16)
                           for m in media])
      if clf is not None:
        pred = clf(tgt, inputs)
        real_pred = clf(tgt, np.asarray(batch[tgt]))
        hits += [bool(p == l) for p, l in zip(pred[keep], label[keep])]
        real_hits += [bool(p == l) for p, l in zip(real_pred[keep], label[keep])]
      for i in np.flatnonzero(keep):
        name = f'{int(batch["index"][i]):04d}_{CLASS_NAMES[int(label[i])]}'
        if tgt == 'image':
          _write_png(os.path.join(out_dir, name + '.png'), media[i])
        else:
          _write_wav(os.path.join(out_dir, name + '.wav'), inputs[i] / 32768.0,
                     spec['sample_rate'])
        if len(grid) < 40:
          grid.append(media[i])
          grid_labels.append(CLASS_NAMES[int(label[i])] + (
              '' if clf is None else (' ok' if pred[i] == label[i] else ' x')))
      asked += [int(l) for l in label[keep]]
    labels += [int(l) for l in label[keep]]
    seen += int(keep.sum())
  report = {'workdir': workdir, 'step': int(step), 'from': src, 'to': tgt, 'examples': seen,
            'token_accuracy': sum(a * n for a, n in acc) / max(sum(n for _, n in acc), 1),
            'chance': 0.1}
  if tgt == 'text':
    report['right_digit_share'] = float(np.mean(hits)) if hits else 0.0
    report['samples'] = samples[:50]
  else:
    report['maskgit_steps'] = steps
    report['temperature'] = temperature
    rep = tokenizer_files.report_of(dict(model.fourm.tokenizers)[tgt])
    report['tokenizer'] = {'path': dict(model.fourm.tokenizers)[tgt],
                           'test_mse': rep['metrics'].get('test_mse'),
                           'codebook_usage': rep['metrics'].get('test_codebook_usage')}
    if recon:
      report['tokenizer']['mse_here'] = float(np.mean(recon))
    if clf is not None:
      report['classified_as_asked'] = float(np.mean(hits)) if hits else 0.0
      report['classifier_on_real_inputs'] = float(np.mean(real_hits)) if real_hits else 0.0
      report['classifier'] = classifier
  if grid and all(g is not None for g in grid):
    _grid(os.path.join(out_dir, 'grid.png'), grid, grid_labels,
          'image' if (tgt == 'image' or src == 'image') else 'audio')
  layout.write_json(os.path.join(out_dir, 'report.json'), report)
  return report
