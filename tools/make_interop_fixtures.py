"""Parity fixtures written by the real libraries (open_clip, transformers): tiny random models
with the real structure in each format, plus the libraries' own embeddings of fixed inputs and
their tokenizers' ids. The tests (tests/test_interop_*.py) compare mmjax against these files,
so CI needs no torch. Run it in a separate venv (never installed by `make`):

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install -r tools/make_interop_fixtures.requirements.txt
    /tmp/torchvenv/bin/python tools/make_interop_fixtures.py --output=tests/fixtures/interop

and, to check an `mmjax.export --format=hf_clip` folder with transformers itself:

    /tmp/torchvenv/bin/python tools/make_interop_fixtures.py --verify_hf_clip=OUT \
        --expected=OUT/mmjax_embeddings.npz

Layout of --output: `open_clip/` (open_clip_config.json in the hub layout, open_clip_model
.safetensors), `hf_clip/` and `hf_siglip/` (transformers folders: config.json,
model.safetensors), each with `expected.npz` (`pixels` uint8 [n, H, W, 3], `ids` int32 [n, L],
`image` / `text` the library's L2-normalised embeddings); `tokenizers.json` (texts and
`open_clip.tokenize` ids at lengths 77 and 10, transformers' SiglipTokenizer ids at 16 of the
tiny SentencePiece model trained here, `hf_siglip/spiece.model`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

TEXTS = [
    'a photo of a cat.', 'A PHOTO OF A DOG!!', 'Café naïve résumé — déjà vu', '日本語のテキスト 猫',
    'emoji 🐱🚀 and &amp; html &lt;b&gt;', '', '   lots   of\twhite\nspace   ',
    "it's what we've done, isn't it? (yes) [no] {maybe} #42 $3.50 100%",
    ' '.join(['this sentence is much longer than the context'] * 12),
]
IMAGE, PATCH, N, LENGTH = 32, 8, 3, 16


def _perturb(model, seed: int):
  """Every parameter moved off its init (norms near 1, biases non-zero), so a transposed or
  swapped tensor shows in the embeddings."""
  import torch
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=g)
      if p.ndim == 1 and ('ln' in name or 'norm' in name) and name.endswith('weight'):
        p.copy_(1.0 + 0.1 * noise)
      elif 'logit_scale' in name:
        p.fill_(float(np.log(10.0)))
      elif 'logit_bias' in name:
        p.fill_(-2.5)
      else:
        p.add_(0.05 * noise)


def _inputs(vocab: int, sot: int | None, eot: int, pad: int = 0):
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (N, IMAGE, IMAGE, 3), dtype=np.uint8)
  ids = np.full((N, LENGTH), pad, np.int32)
  for i, n in enumerate((5, 9, LENGTH - (1 if sot is not None else 0))):
    body = rng.integers(3, vocab - 3, n - 1).astype(np.int32)
    body[1] = 0   # id 0 inside the text ('!' in CLIP's vocabulary) must not be taken for padding
    row = ([sot] if sot is not None else []) + list(body) + [eot]
    ids[i, :len(row)] = row[:LENGTH]
  return pixels, ids


def _normalised(pixels, mean, std):
  import torch
  x = (pixels.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
  return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def _save_expected(path, pixels, ids, image, text, **extra):
  np.savez(path, pixels=pixels, ids=ids, image=np.asarray(image, np.float32),
           text=np.asarray(text, np.float32), **extra)


def _import_open_clip():
  """open_clip imports torchvision; PyPI's Linux torchvision wheel is CUDA-built, so next to a
  CPU torch its detection ops (never used here) fail to load: define their two schemas first."""
  import torch
  try:
    import open_clip
  except RuntimeError as e:
    if 'torchvision::nms' not in str(e):
      raise
    for name in sys.modules.copy():
      if name.startswith(('torchvision', 'open_clip')):
        del sys.modules[name]
    lib = torch.library.Library('torchvision', 'DEF')  # noqa: F841 - kept alive below
    for op in ('nms', 'qnms'):
      lib.define(f'{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    _import_open_clip.lib = lib
    import open_clip
  return open_clip


def open_clip_fixture(out: str):
  open_clip = _import_open_clip()
  import torch
  from safetensors.torch import save_file
  cfg = {'embed_dim': 24, 'quick_gelu': True,
         'vision_cfg': {'image_size': IMAGE, 'layers': 2, 'width': 32, 'head_width': 16,
                        'mlp_ratio': 2.0, 'patch_size': PATCH},
         'text_cfg': {'context_length': LENGTH, 'vocab_size': 300, 'width': 16, 'heads': 2,
                      'layers': 2, 'mlp_ratio': 2.0}}
  mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
  torch.manual_seed(0)
  model = open_clip.model.CLIP(cfg['embed_dim'], cfg['vision_cfg'], cfg['text_cfg'],
                               quick_gelu=True).eval()
  _perturb(model, 1)
  os.makedirs(out, exist_ok=True)
  hub = {'model_cfg': cfg, 'preprocess_cfg': {'mean': mean, 'std': std,
                                              'interpolation': 'bicubic', 'resize_mode': 'shortest'}}
  with open(os.path.join(out, 'open_clip_config.json'), 'w') as f:
    json.dump(hub, f, indent=2)
  save_file({k: v.contiguous() for k, v in model.state_dict().items()},
            os.path.join(out, 'open_clip_model.safetensors'))
  pixels, ids = _inputs(300, 298, 299)
  with torch.no_grad():
    image = model.encode_image(_normalised(pixels, mean, std), normalize=True).numpy()
    text = model.encode_text(torch.from_numpy(ids).long(), normalize=True).numpy()
  _save_expected(os.path.join(out, 'expected.npz'), pixels, ids, image, text)


def hf_clip_fixture(out: str):
  import torch
  from transformers import CLIPConfig, CLIPModel
  cfg = CLIPConfig(
      text_config=dict(vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                       num_attention_heads=2, max_position_embeddings=LENGTH, eos_token_id=2,
                       bos_token_id=1, pad_token_id=0),
      vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, image_size=IMAGE, patch_size=PATCH),
      projection_dim=24)
  torch.manual_seed(0)
  model = CLIPModel(cfg).eval()
  _perturb(model, 2)
  model.save_pretrained(out, safe_serialization=True)
  pixels, ids = _inputs(300, 298, 299)
  mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
  embeddings = hf_clip_embeddings(model, _normalised(pixels, mean, std), ids)
  _save_expected(os.path.join(out, 'expected.npz'), pixels, ids, *embeddings)


def hf_clip_embeddings(model, pixel_values, ids):
  import torch
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(np.asarray(ids)).long(), pixel_values=pixel_values)
  return out.image_embeds.numpy(), out.text_embeds.numpy()


def hf_siglip_fixture(out: str):
  import torch
  from transformers import SiglipConfig, SiglipModel
  cfg = SiglipConfig(
      text_config=dict(vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                       num_attention_heads=2, max_position_embeddings=LENGTH,
                       projection_size=32),
      vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, image_size=IMAGE, patch_size=PATCH))
  torch.manual_seed(0)
  model = SiglipModel(cfg).eval()
  _perturb(model, 3)
  model.save_pretrained(out, safe_serialization=True)
  pixels, ids = _inputs(300, None, 1, pad=1)
  with torch.no_grad():
    o = model(input_ids=torch.from_numpy(ids).long(),
              pixel_values=_normalised(pixels, (0.5,) * 3, (0.5,) * 3))
  _save_expected(os.path.join(out, 'expected.npz'), pixels, ids, o.image_embeds.numpy(),
                 o.text_embeds.numpy(), logit_scale=model.logit_scale.item(),
                 logit_bias=model.logit_bias.item())


def tokenizer_fixture(out: str):
  open_clip = _import_open_clip()
  import sentencepiece as spm
  from transformers import SiglipTokenizer
  import io
  result = {'texts': TEXTS,
            'open_clip_77': open_clip.tokenize(TEXTS, context_length=77).int().tolist(),
            'open_clip_10': open_clip.tokenize(TEXTS, context_length=10).int().tolist()}
  corpus = [t.lower() for t in TEXTS] * 4 + ['a photo of a bird', 'a picture of the sea']
  buf = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(corpus), model_writer=buf, vocab_size=120, model_type='unigram',
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, character_coverage=1.0,
      normalization_rule_name='identity', minloglevel=2)
  path = os.path.join(out, 'hf_siglip', 'spiece.model')   # where a SigLIP folder keeps it
  with open(path, 'wb') as f:
    f.write(buf.getvalue())
  tok = SiglipTokenizer(vocab_file=path)
  result['siglip_16'] = tok(TEXTS, padding='max_length', max_length=LENGTH,
                            truncation=True)['input_ids']
  with open(os.path.join(out, 'tokenizers.json'), 'w') as f:
    json.dump(result, f, ensure_ascii=False, indent=1)


def preprocess_fixture(out: str):
  """open_clip's own eval transform (shorter side bicubic, centre crop, mean/std) of two
  non-square images, beside the raw pixels."""
  open_clip = _import_open_clip()
  from PIL import Image
  rng = np.random.default_rng(5)
  mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
  tf = open_clip.image_transform(IMAGE, is_train=False, mean=mean, std=std,
                                 interpolation='bicubic', resize_mode='shortest')
  raw, values = {}, []
  for i, (h, w) in enumerate(((40, 61), (75, 50))):
    ramp = np.linspace(0, 255, h * w * 3).reshape(h, w, 3)
    img = np.clip(ramp + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    raw[f'image_{i}'] = img
    values.append(tf(Image.fromarray(img)).numpy())
  np.savez(os.path.join(out, 'preprocess.npz'), pixel_values=np.stack(values),
           mean=np.asarray(mean), std=np.asarray(std), **raw)


def verify_hf_clip(folder: str, expected: str) -> int:
  """Loads `folder` with transformers.CLIPModel.from_pretrained and compares its embeddings of
  the inputs in `expected` (`pixel_values` float [n, 3, H, W], `ids`) with `image` / `text`."""
  import torch
  from transformers import CLIPImageProcessor, CLIPModel
  model = CLIPModel.from_pretrained(folder).eval()
  e = np.load(expected)
  image, text = hf_clip_embeddings(model, torch.from_numpy(e['pixel_values']), e['ids'])
  diff = {'image': float(np.abs(image - e['image']).max()),
          'text': float(np.abs(text - e['text']).max())}
  if os.path.isfile(os.path.join(folder, 'preprocessor_config.json')):
    # The processor resizes and crops a same-size image to itself: its pixel_values must be
    # the mean/std normalisation the mmjax model applies.
    proc = CLIPImageProcessor.from_pretrained(folder)
    values = proc(images=list(e['pixels']), return_tensors='np')['pixel_values']
    diff['preprocessor_pixel_values'] = float(np.abs(values - e['pixel_values']).max())
  ok = max(diff.values()) <= 1e-4
  print(json.dumps({'folder': folder, 'max_abs_diff': diff, 'pass': ok}))
  return 0 if ok else 1


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--output', default='tests/fixtures/interop')
  p.add_argument('--verify_hf_clip', default='')
  p.add_argument('--expected', default='')
  args = p.parse_args(argv)
  _import_open_clip()   # also makes torchvision importable for transformers (see there)
  if args.verify_hf_clip:
    return verify_hf_clip(args.verify_hf_clip, args.expected)
  os.makedirs(args.output, exist_ok=True)
  open_clip_fixture(os.path.join(args.output, 'open_clip'))
  hf_clip_fixture(os.path.join(args.output, 'hf_clip'))
  hf_siglip_fixture(os.path.join(args.output, 'hf_siglip'))
  tokenizer_fixture(args.output)
  preprocess_fixture(args.output)
  return 0


if __name__ == '__main__':
  sys.exit(main())
