"""`export_hf_clip`: an mmjax image-text model (training run or export) -> a transformers
`CLIPModel` folder (`config.json` + `model.safetensors`), the inverse of `published.read_hf_clip`.

    python -m mmjax.export --workdir=DIR --format=hf_clip --output=OUT

Maps when the model is CLIP-shaped: image and text towers (one per modality, or one shared
encoder copied into both), the image tower pooled at a class token after a pre-encoder LayerNorm
(`towers.image.pooling='cls'` or `model.pooling='cls'`, `towers.image.ln_pre`), the text tower
causal and pooled at its highest id (`towers.text.pooling='eot'`, CLIPModel's `eos_token_id=2`
rule), dense MLPs, no QK-norm, projections without bias. Factorised image positions become the
full table of the input grid, and the patch embedding's bias is folded into the patch
positions (both are added to every patch token), so the folder computes the same function.
Anything else is refused in one sentence naming the option. `preprocessor_config.json` carries
the input size and pixel mean/std (CLIPImageProcessor). The folder also holds
`mmjax_embeddings.npz`: fixed inputs and the mmjax model's embeddings of them, which
`tools/make_interop_fixtures.py --verify_hf_clip=OUT` compares with transformers' own.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from mmjax.export import staging
from mmjax.export.errors import ExportError
from mmjax.models import towers
from mmjax.config.defaults import setting

ACTIVATIONS = {'quick_gelu': 'quick_gelu', 'gelu': 'gelu', 'gelu_tanh': 'gelu_pytorch_tanh'}
PARITY_FILE = 'mmjax_embeddings.npz'


def _refuse(what: str):
  raise ExportError(f'{what} does not map onto a transformers CLIPModel: export another format '
                    '(--format=safetensors) or train with CLIP-shaped towers (configs/siglip.py:clip).')


def check_mappable(config, params: dict) -> dict:
  """The two towers' sizes, or ExportError naming the first option that does not map."""
  m = config.model
  mods = sorted({x for t in config.tasks.values()
                 for x in str(t.modalities).replace(' ', '').split(',')})
  if 'image' not in mods or 'text' not in mods:
    _refuse(f'a model of modalities {mods} (CLIP has an image and a text tower)')
  moe = setting(m, 'model.moe')
  if setting(moe, 'model.moe.num_experts') or moe.get('mixture_of_transformers'):
    _refuse('config.model.moe (sparse experts)')
  if m.qk_norm:
    _refuse('config.model.qk_norm=True')
  if setting(setting(m, 'model.routed_attention'), 'model.routed_attention.layers'):
    _refuse('config.model.routed_attention.layers')
  sizes = {}
  for mod in ('image', 'text'):
    view = towers.tower_config(m, mod)
    sizes[mod] = dict(width=view.width, layers=view.num_layers, heads=view.num_heads,
                      mlp_dim=view.mlp_dim)
  if towers.pooling(m, 'image') != 'cls':
    _refuse(f"image pooling {towers.pooling(m, 'image')!r} (CLIP pools its class token)")
  if not towers.tower(m, 'image')['ln_pre']:
    _refuse('an image tower without ln_pre (config.model.towers.image.ln_pre=False)')
  if towers.tower(m, 'image')['causal']:
    _refuse('a causal image tower')
  if towers.pooling(m, 'text') != 'eot' or not towers.tower(m, 'text')['causal']:
    _refuse(f"a text tower with pooling {towers.pooling(m, 'text')!r} and causal="
            f"{towers.tower(m, 'text')['causal']} (CLIP: causal, pooled at the highest id, "
            "towers.text.pooling='eot')")
  if towers.tower(m, 'text')['ln_pre']:
    _refuse('a text tower with ln_pre')
  for mod in ('image', 'text'):
    bias = params[f'proj_{mod}'].get('bias')
    if bias is not None and np.any(np.asarray(bias) != 0):
      _refuse(f'a projection bias (proj_{mod}.bias; config.model.proj_bias=False maps)')
  if setting(m, 'model.contrast_loss') != 'softmax':
    _refuse("contrast_loss='sigmoid' (a logit bias)")
  return sizes


def _grid(config) -> int:
  for t in config.tasks.values():
    if 'image' in str(t.modalities) and t.get('image_size'):
      size = t.image_size
      size = size[0] if isinstance(size, (tuple, list)) else size
      return int(size) // int(config.model.patch_size)
  return int(config.model.max_grid)


def _linear(out: dict, name: str, dense: dict, bias: bool = True):
  out[f'{name}.weight'] = np.asarray(dense['kernel']).T
  if bias:
    out[f'{name}.bias'] = np.asarray(dense['bias'])


def _norm(out: dict, name: str, norm: dict):
  out[f'{name}.weight'], out[f'{name}.bias'] = np.asarray(norm['scale']), np.asarray(norm['bias'])


def _encoder(out: dict, pre: str, enc: dict, layers: int):
  for i in range(layers):
    b, p = enc[f'block_{i}'], f'{pre}.encoder.layers.{i}'
    _norm(out, f'{p}.layer_norm1', b['norm1'])
    _norm(out, f'{p}.layer_norm2', b['norm2'])
    qkv_k, qkv_b = np.asarray(b['attn']['qkv']['kernel']), np.asarray(b['attn']['qkv']['bias'])
    width = qkv_k.shape[0]
    for j, name in enumerate(('q_proj', 'k_proj', 'v_proj')):
      out[f'{p}.self_attn.{name}.weight'] = qkv_k[:, j].reshape(width, -1).T
      out[f'{p}.self_attn.{name}.bias'] = qkv_b[j].reshape(-1)
    ok, ob = np.asarray(b['attn']['out']['kernel']), np.asarray(b['attn']['out']['bias'])
    out[f'{p}.self_attn.out_proj.weight'] = ok.reshape(-1, ok.shape[-1]).T
    out[f'{p}.self_attn.out_proj.bias'] = ob
    _linear(out, f'{p}.mlp.fc1', b['mlp']['wi'])
    _linear(out, f'{p}.mlp.fc2', b['mlp']['wo'])


def to_hf(config, params: dict) -> tuple[dict, dict]:
  """-> (transformers config dict, {name: float32 array}) of the CLIPModel."""
  params = jax.tree.map(lambda p: np.asarray(p, np.float32), params)
  sizes = check_mappable(config, params)
  m = config.model
  grid, patch, eps = _grid(config), int(m.patch_size), towers.norm_eps(m)
  enc = {mod: params['encoder'] if 'encoder' in params else params[f'encoder_{mod}']
         for mod in ('image', 'text')}
  out: dict = {}
  emb = params['embed_image']
  width = sizes['image']['width']
  if 'pos' in emb:
    pos = emb['pos'].reshape(m.max_grid, m.max_grid, width)[:grid, :grid]
  else:
    pos = emb['pos_h'][:grid][:, None] + emb['pos_w'][:grid][None, :]
  pos = pos.reshape(grid * grid, width) + emb['proj']['bias'][None]
  out['vision_model.embeddings.position_embedding.weight'] = np.concatenate(
      [np.zeros((1, width), np.float32), pos])
  out['vision_model.embeddings.class_embedding'] = params['cls_image'].reshape(width)
  out['vision_model.embeddings.patch_embedding.weight'] = (
      emb['proj']['kernel'].reshape(patch, patch, 3, width).transpose(3, 2, 0, 1))
  _norm(out, 'vision_model.pre_layrnorm', params['ln_pre_image'])
  _encoder(out, 'vision_model', enc['image'], sizes['image']['layers'])
  _norm(out, 'vision_model.post_layernorm', enc['image']['norm'])
  out['visual_projection.weight'] = params['proj_image']['kernel'].T
  out['text_model.embeddings.token_embedding.weight'] = params['embed_text']['token_embedding']
  out['text_model.embeddings.position_embedding.weight'] = params['embed_text']['pos_t']
  _encoder(out, 'text_model', enc['text'], sizes['text']['layers'])
  _norm(out, 'text_model.final_layer_norm', enc['text']['norm'])
  out['text_projection.weight'] = params['proj_text']['kernel'].T
  out['logit_scale'] = -np.asarray(params['log_temperature_image_text']).reshape(())
  act = ACTIVATIONS[setting(m, 'model.activation')]
  common = dict(hidden_act=act, layer_norm_eps=eps, attention_dropout=0.0)
  hf = {
      'architectures': ['CLIPModel'], 'model_type': 'clip',
      'projection_dim': int(m.embed_dim),
      'logit_scale_init_value': float(out['logit_scale']),
      'text_config': dict(common, model_type='clip_text_model',
                          vocab_size=int(m.vocab_size),
                          hidden_size=sizes['text']['width'],
                          intermediate_size=sizes['text']['mlp_dim'],
                          num_hidden_layers=sizes['text']['layers'],
                          num_attention_heads=sizes['text']['heads'],
                          max_position_embeddings=int(m.max_text_length),
                          projection_dim=int(m.embed_dim),
                          eos_token_id=2, bos_token_id=1, pad_token_id=0),
      'vision_config': dict(common, model_type='clip_vision_model',
                            hidden_size=width, intermediate_size=sizes['image']['mlp_dim'],
                            num_hidden_layers=sizes['image']['layers'],
                            num_attention_heads=sizes['image']['heads'],
                            image_size=grid * patch, patch_size=patch, num_channels=3,
                            projection_dim=int(m.embed_dim)),
  }
  return hf, {k: np.array(v, np.float32, order='C') for k, v in out.items()}  # keeps 0-d


def image_processor(config) -> dict:
  """transformers' CLIPImageProcessor settings of the model: its input size and mean/std."""
  size = _grid(config) * int(config.model.patch_size)
  mean = list(setting(config.model, 'model.pixel_mean') or (0.5,) * 3)
  std = list(setting(config.model, 'model.pixel_std') or (0.5,) * 3)
  return {'image_processor_type': 'CLIPImageProcessor', 'do_resize': True,
          'size': {'shortest_edge': size}, 'resample': 3, 'do_center_crop': True,
          'crop_size': {'height': size, 'width': size}, 'do_rescale': True,
          'rescale_factor': 1 / 255, 'do_normalize': True, 'image_mean': mean,
          'image_std': std, 'do_convert_rgb': True}


def check_output(output: str, overwrite: bool) -> None:
  """A new or empty directory, or (with `overwrite`) a CLIPModel folder this export wrote."""
  staging.check_output(output, overwrite, kind='hf_clip',
                       is_ours=lambda d: os.path.isfile(os.path.join(d, PARITY_FILE)))


def parity_inputs(config, n: int = 3, seed: int = 0) -> dict:
  """Fixed uint8 pixels, the CLIPModel's `pixel_values` of them, and ids ending at the highest
  id (CLIP's end token) followed by padding."""
  rng = np.random.default_rng(seed)
  size = _grid(config) * int(config.model.patch_size)
  length, vocab = int(config.model.max_text_length), int(config.model.vocab_size)
  pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
  mean = np.asarray(setting(config.model, 'model.pixel_mean') or (0.5,) * 3, np.float32)
  std = np.asarray(setting(config.model, 'model.pixel_std') or (0.5,) * 3, np.float32)
  values = ((pixels.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
  ids = np.zeros((n, length), np.int32)
  for i in range(n):
    end = 1 + (i * 5 + 3) % (length - 1)
    ids[i, :end] = rng.integers(1, vocab - 1, end)
    ids[i, end] = vocab - 1
  return {'pixels': pixels, 'pixel_values': values, 'ids': ids}


def export_hf_clip(config, params: dict, model, output: str, overwrite: bool = False) -> dict:
  """Writes the CLIPModel folder of (config, params) to `output`; `model` is the mmjax model of
  those params (for the parity reference). Returns a small report."""
  hf, tensors = to_hf(config, params)
  check_output(output, overwrite)
  inputs = parity_inputs(config)
  embed = nnx.jit(lambda model, batch, m: model.embed(batch, m), static_argnums=2)
  image = np.asarray(embed(model, {'image': inputs['pixels']}, 'image'))
  text = np.asarray(embed(model, {'text': inputs['ids'],
                                  'text_mask': (inputs['ids'] != 0).astype(np.int32)}, 'text'))
  with staging.staged(output) as tmp:
    with open(os.path.join(tmp, 'config.json'), 'w') as f:
      json.dump(hf, f, indent=2, sort_keys=True)
    save_file(tensors, os.path.join(tmp, 'model.safetensors'), metadata={'format': 'pt'})
    with open(os.path.join(tmp, 'preprocessor_config.json'), 'w') as f:
      json.dump(image_processor(config), f, indent=2, sort_keys=True)
    np.savez(os.path.join(tmp, PARITY_FILE), pixel_values=inputs['pixel_values'],
             pixels=inputs['pixels'], ids=inputs['ids'], image=image, text=text)
    staging.commit(tmp, output)
  return {'format': 'hf_clip', 'output': os.path.abspath(output), 'tensors': len(tensors),
          'parameters': int(sum(v.size for v in tensors.values()))}
