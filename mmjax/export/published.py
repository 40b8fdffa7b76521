"""Published CLIP-family checkpoints -> mmjax params + config (what `tools.import_weights` writes).

  read_open_clip(config_json, weights)  open_clip hub layout ({"model_cfg", "preprocess_cfg"})
                                        or a bare model config (open_clip's model_configs/*.json)
  read_hf_clip(folder)                  transformers CLIPModel (config.json + model.safetensors)
  read_hf_siglip(folder)                transformers SiglipModel

Each returns an `Imported` (mmjax config, nested params, preprocessing, tokenizer kind). Weights
are read with safetensors only; every tensor of the source must be used and every mmjax
parameter filled with its exact shape, and any option the mapping cannot reproduce is refused
(`ExportError`, one sentence naming it), so nothing is approximated.

Tensor mapping (torch Linear weights are [out, in]; mmjax kernels [in, out]):
  patch conv [W, 3, P, P]            -> embed_image.proj.kernel [P*P*3, W] (row, column, channel)
  position table [(1+)G*G, W]        -> embed_image.pos [G*G, W]; a class token's row is added to
                                        cls_image (both are added to the same token)
  in_proj / q,k,v [3W, W]            -> attn.qkv.kernel [W, 3, H, K]; out_proj -> attn.out [H, K, W]
  text_projection / visual.proj      -> proj_<modality>.kernel [W, D]
  logit_scale (log 1/T), logit_bias  -> log_temperature_image_text = -logit_scale, logit_bias_…
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from safetensors.numpy import load_file

from mmjax.config.defaults import base_config, task
from mmjax.export.errors import ExportError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
TORCH_FILES = ('.bin', '.pt', '.pth', '.ckpt')
HF_RESAMPLE = {0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic'}


@dataclasses.dataclass
class Imported:
  config: object          # ml_collections.ConfigDict (a full mmjax run config)
  params: dict            # nested params dict, float32 numpy
  preprocess: dict        # {'size', 'resize', 'interpolation', 'crop', 'mean', 'std'}
  tokenizer: str          # 'clip_bpe' | 'sentencepiece_siglip'
  source: dict            # what was imported


# -- reading ------------------------------------------------------------------------------------

def conversion_hint(path: str) -> str:
  return (f'{path} is a PyTorch checkpoint (.bin/.pt); mmjax reads safetensors only. Convert it once with: '
          'python -c "import torch, sys; from safetensors.torch import save_file; '
          "sd = torch.load(sys.argv[1], map_location='cpu'); sd = sd.get('state_dict', sd); "
          "save_file({k.removeprefix('module.'): v.contiguous() for k, v in sd.items()}, "
          f'sys.argv[2])" {path} model.safetensors')


def read_weights(path: str) -> dict[str, np.ndarray]:
  """A safetensors file -> `{name: float32 array}`; a torch .bin/.pt file gets the conversion line."""
  if path.endswith(TORCH_FILES):
    raise ExportError(conversion_hint(path))
  if not os.path.isfile(path):
    raise ExportError(f'weights file {path} does not exist: pass a .safetensors file.')
  try:
    raw = load_file(path)
  except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
    raise ExportError(f'{path} is not a readable safetensors file ({str(e)[:120]}): pass the '
                      'model.safetensors of the checkpoint.') from None
  return {k: np.asarray(v, np.float32) for k, v in raw.items()}


def _read_json(path: str) -> dict:
  if not os.path.isfile(path):
    raise ExportError(f'{path} does not exist: pass the checkpoint\'s config JSON.')
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ExportError(f'{path} is not valid JSON ({e}): pass the checkpoint\'s config.') from None


def _refuse(option: str, value, source: str):
  raise ExportError(f'{source} option {option}={value!r} is not supported by the importer '
                    '(nothing is approximated): import a checkpoint without it.')


class _Weights:
  """Source tensors taken one by one; `done` refuses any left unused."""

  def __init__(self, tensors: dict, source: str):
    self.t, self.used, self.source = tensors, set(), source

  def __contains__(self, name):
    return name in self.t

  def __call__(self, name: str) -> np.ndarray:
    if name not in self.t:
      raise ExportError(f'{self.source} weights have no tensor {name!r}: the file does not match '
                        'its config.')
    self.used.add(name)
    return self.t[name]

  def done(self):
    left = sorted(set(self.t) - self.used)
    if left:
      raise ExportError(f'{self.source} weights hold {len(left)} tensors the importer does not '
                        f'map (first: {left[0]!r}): that option is not supported.')


# -- tensor layouts -----------------------------------------------------------------------------

def _dense(w, b=None):
  d = {'kernel': w.T.copy()}
  if b is not None:
    d['bias'] = b
  return d


def _norm(w, b):
  return {'scale': w, 'bias': b}


def _qkv(w, b, heads: int):
  """Stacked q;k;v `[3W, W]`, `[3W]` -> `attn.qkv` `[W, 3, H, K]`, `[3, H, K]`."""
  width = w.shape[1]
  k = w.reshape(3, heads, width // heads, width).transpose(3, 0, 1, 2)
  return {'kernel': k.copy(), 'bias': b.reshape(3, heads, width // heads)}


def _out(w, b, heads: int):
  width = w.shape[0]
  return {'kernel': w.T.reshape(heads, w.shape[1] // heads, width).copy(), 'bias': b}


def _patch(conv, bias=None):
  width, c, p, _ = conv.shape
  d = {'kernel': conv.transpose(2, 3, 1, 0).reshape(p * p * c, width).copy()}
  d['bias'] = bias if bias is not None else np.zeros((width,), np.float32)
  return d


def _block(w: _Weights, pre: str, heads: int, names: dict) -> dict:
  """One pre-LN Transformer block; `names` gives the source's sub-names."""
  n = names
  if 'in_proj' in n:
    qkv = _qkv(w(f'{pre}.{n["in_proj"]}_weight'), w(f'{pre}.{n["in_proj"]}_bias'), heads)
  else:
    ws = [w(f'{pre}.{n[x]}.weight') for x in ('q', 'k', 'v')]
    bs = [w(f'{pre}.{n[x]}.bias') for x in ('q', 'k', 'v')]
    qkv = _qkv(np.concatenate(ws), np.concatenate(bs), heads)
  return {
      'norm1': _norm(w(f'{pre}.{n["ln1"]}.weight'), w(f'{pre}.{n["ln1"]}.bias')),
      'attn': {'qkv': qkv, 'out': _out(w(f'{pre}.{n["out"]}.weight'), w(f'{pre}.{n["out"]}.bias'),
                                       heads)},
      'norm2': _norm(w(f'{pre}.{n["ln2"]}.weight'), w(f'{pre}.{n["ln2"]}.bias')),
      'mlp': {'wi': _dense(w(f'{pre}.{n["fc1"]}.weight'), w(f'{pre}.{n["fc1"]}.bias')),
              'wo': _dense(w(f'{pre}.{n["fc2"]}.weight'), w(f'{pre}.{n["fc2"]}.bias'))}}


OPEN_CLIP_BLOCK = dict(in_proj='attn.in_proj', out='attn.out_proj', ln1='ln_1', ln2='ln_2',
                       fc1='mlp.c_fc', fc2='mlp.c_proj')
HF_BLOCK = dict(q='self_attn.q_proj', k='self_attn.k_proj', v='self_attn.v_proj',
                out='self_attn.out_proj', ln1='layer_norm1', ln2='layer_norm2', fc1='mlp.fc1',
                fc2='mlp.fc2')


def _encoder(w, pre: str, layers: int, heads: int, names: dict, final: str) -> dict:
  enc = {f'block_{i}': _block(w, f'{pre}.{i}', heads, names) for i in range(layers)}
  enc['norm'] = _norm(w(f'{final}.weight'), w(f'{final}.bias'))
  return enc


# -- the mmjax config ---------------------------------------------------------------------------

def make_config(image: dict, text: dict, *, embed_dim: int, activation: str, eps: float,
                mean, std, proj_bias: bool, temperature: float, sigmoid: bool,
                tokenizer_file: str, eval_resize: str):
  """The run config of an imported image-text model (towers: width, layers, heads, mlp_dim,
  pooling, ...; image also patch, image_size, ln_pre; text vocab, length, causal)."""
  c = base_config()
  m = c.model
  with c.unlocked():
    m.width, m.num_layers, m.num_heads, m.mlp_dim = (image['width'], image['layers'],
                                                     image['heads'], image['mlp_dim'])
    m.embed_dim, m.patch_size = int(embed_dim), image['patch']
    m.max_grid = image['image_size'] // image['patch']
    m.max_text_length, m.vocab_size = text['length'], text['vocab']
    m.encoder_sharing, m.pos_embed, m.attention_impl = 'per_modality', 'full', 'xla'
    m.activation, m.norm_eps = activation, float(eps)
    m.pixel_mean, m.pixel_std = tuple(map(float, mean)), tuple(map(float, std))
    m.proj_bias = bool(proj_bias)
    m.towers.image.pooling, m.towers.image.ln_pre = image['pooling'], bool(image['ln_pre'])
    t = m.towers.text
    t.width, t.num_layers, t.num_heads, t.mlp_dim = (text['width'], text['layers'], text['heads'],
                                                     text['mlp_dim'])
    t.pooling, t.causal, t.padding_mask = text['pooling'], bool(text['causal']), False
    m.temperature.init = float(temperature)
    m.temperature.min = min(float(m.temperature.min), float(temperature))
    m.temperature.max = max(float(m.temperature.max), float(temperature))
    if sigmoid:
      m.contrast_loss = 'sigmoid'
    c.data.eval_resize = eval_resize   # the model's own eval resize (data/recipe_resize.py)
    c.text.tokenizer = tokenizer_file
    c.text.lowercase = True
    c.tasks.contrastive = task('imported', 'image,text', 32, contrast='image-text',
                               image_size=image['image_size'], text_length=text['length'])
  return c


def _logit_params(w: _Weights, scale_key: str, bias_key: str | None):
  params = {'log_temperature_image_text': -np.asarray(w(scale_key), np.float32).reshape(())}
  if bias_key is not None:
    params['logit_bias_image_text'] = np.asarray(w(bias_key), np.float32).reshape(())
  return params


# -- open_clip ----------------------------------------------------------------------------------

OPEN_CLIP_VISION = dict(layers=12, width=768, head_width=64, mlp_ratio=4.0, patch_size=16,
                        image_size=224)
OPEN_CLIP_TEXT = dict(context_length=77, vocab_size=49408, width=512, heads=8, layers=12,
                      mlp_ratio=4.0)
# Options whose non-default value the mapping cannot reproduce (default value given).
OPEN_CLIP_REFUSED_VISION = dict(
    ls_init_value=None, attentional_pool=False, pos_embed_type='learnable', pool_type='tok',
    act_kwargs=None, norm_kwargs=None, qk_norm=False, scaled_cosine_attn=False, scale_heads=False,
    scale_attn_inner=False, scale_attn=False, scale_fc=False, timm_model_name=None,
    block_type=None)
OPEN_CLIP_REFUSED_TEXT = dict(
    ls_init_value=None, embed_cls=False, hf_model_name=None, proj_type='linear', act_kwargs=None,
    norm_kwargs=None, qk_norm=False, scaled_cosine_attn=False, scale_heads=False,
    scale_attn_inner=False, scale_attn=False, scale_fc=False, block_type=None,
    hf_tokenizer_name=None, tokenizer_mode=None)
OPEN_CLIP_REFUSED_TOP = dict(custom_text=False, cast_dtype=None)


def read_open_clip(config_path: str, weights_path: str) -> Imported:
  raw = _read_json(config_path)
  cfg = raw.get('model_cfg', raw)
  pre = raw.get('preprocess_cfg', {}) or {}
  src = 'open_clip'
  if 'vision_cfg' not in cfg or 'text_cfg' not in cfg:
    raise ExportError(f'{config_path} has no vision_cfg/text_cfg: pass an open_clip model config '
                      '(open_clip_config.json of a hub model, or model_configs/<name>.json).')
  for k, default in OPEN_CLIP_REFUSED_TOP.items():
    if cfg.get(k, default) not in (default, False, None):
      _refuse(k, cfg[k], src)
  v = {**OPEN_CLIP_VISION, **cfg['vision_cfg']}
  t = {**OPEN_CLIP_TEXT, **cfg['text_cfg']}
  for k, default in OPEN_CLIP_REFUSED_VISION.items():
    if v.get(k, default) != default:
      _refuse(f'vision_cfg.{k}', v[k], src)
  for k, default in OPEN_CLIP_REFUSED_TEXT.items():
    if t.get(k, default) != default:
      _refuse(f'text_cfg.{k}', t[k], src)
  if not isinstance(v['layers'], int):
    _refuse('vision_cfg.layers', v['layers'], src + ' (a ResNet tower)')
  text_pool = t.get('pool_type', 'argmax')
  if text_pool not in ('argmax', 'last'):
    _refuse('text_cfg.pool_type', text_pool, src)
  size = v['image_size']
  if not isinstance(size, int):
    if len(set(size)) != 1:
      _refuse('vision_cfg.image_size', size, src + ' (non-square)')
    size = size[0]
  patch = int(v['patch_size'])
  if size % patch:
    _refuse('vision_cfg.image_size', size, src + f' (not a multiple of patch {patch})')
  vw, tw = int(v['width']), int(t['width'])
  vh = vw // int(v['head_width'])
  image = dict(width=vw, layers=int(v['layers']), heads=vh, mlp_dim=int(vw * v['mlp_ratio']),
               patch=patch, image_size=size, pooling='cls', ln_pre=not v.get('no_ln_pre', False))
  text = dict(width=tw, layers=int(t['layers']), heads=int(t['heads']),
              mlp_dim=int(tw * t['mlp_ratio']), vocab=int(t['vocab_size']),
              length=int(t['context_length']), pooling='eot' if text_pool == 'argmax' else 'last',
              causal=not t.get('no_causal_mask', False))
  w = _Weights(read_weights(weights_path), src)
  grid = size // patch
  pos = w('visual.positional_embedding')
  if pos.shape[0] != 1 + grid * grid:
    raise ExportError(f'open_clip weights have {pos.shape[0]} image positions, not 1 + {grid}²: '
                      'the weights do not match vision_cfg.image_size / patch_size.')
  params = {
      'embed_image': {'proj': _patch(w('visual.conv1.weight')), 'pos': pos[1:]},
      'cls_image': (w('visual.class_embedding') + pos[0])[None],
      'encoder_image': _encoder(w, 'visual.transformer.resblocks', image['layers'], vh,
                                OPEN_CLIP_BLOCK, 'visual.ln_post'),
      'proj_image': {'kernel': w('visual.proj')},
      'embed_text': {'token_embedding': w('token_embedding.weight'),
                     'pos_t': w('positional_embedding')},
      'encoder_text': _encoder(w, 'transformer.resblocks', text['layers'], text['heads'],
                               OPEN_CLIP_BLOCK, 'ln_final'),
  }
  proj_bias = bool(t.get('proj_bias', False))
  if proj_bias:
    params['proj_text'] = _dense(w('text_projection.weight'), w('text_projection.bias'))
    params['proj_image']['bias'] = np.zeros((w('visual.proj').shape[1],), np.float32)
  else:
    params['proj_text'] = {'kernel': w('text_projection')}
  if image['ln_pre']:
    params['ln_pre_image'] = _norm(w('visual.ln_pre.weight'), w('visual.ln_pre.bias'))
  sigmoid = 'logit_bias' in w
  params.update(_logit_params(w, 'logit_scale', 'logit_bias' if sigmoid else None))
  w.done()
  mean = pre.get('mean', OPENAI_MEAN)
  std = pre.get('std', OPENAI_STD)
  activation = 'quick_gelu' if cfg.get('quick_gelu', False) else 'gelu'
  resize, interpolation = pre.get('resize_mode', 'shortest'), pre.get('interpolation', 'bicubic')
  if resize != 'shortest':
    _refuse('preprocess_cfg.resize_mode', resize, src)
  if interpolation not in ('bicubic', 'bilinear'):
    _refuse('preprocess_cfg.interpolation', interpolation, src)
  config = make_config(image, text, embed_dim=cfg['embed_dim'], activation=activation, eps=1e-5,
                       mean=mean, std=std, proj_bias=proj_bias,
                       temperature=float(np.exp(params['log_temperature_image_text'])),
                       sigmoid=sigmoid, tokenizer_file='tokenizer.json', eval_resize=interpolation)
  preprocess = dict(size=size, resize=resize, interpolation=interpolation, crop=True,
                    mean=list(mean), std=list(std))
  return Imported(config, params, preprocess, 'clip_bpe',
                  {'format': 'open_clip', 'config': os.path.basename(config_path),
                   'weights': os.path.basename(weights_path)})


# -- transformers -------------------------------------------------------------------------------

HF_CLIP_TEXT = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                    num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
                    hidden_act='quick_gelu', layer_norm_eps=1e-5, eos_token_id=2)
HF_CLIP_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                      num_attention_heads=12, image_size=224, patch_size=32,
                      hidden_act='quick_gelu', layer_norm_eps=1e-5, num_channels=3)
HF_SIGLIP_TEXT = dict(vocab_size=32000, hidden_size=768, intermediate_size=3072,
                      num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=64,
                      hidden_act='gelu_pytorch_tanh', layer_norm_eps=1e-6, projection_size=None)
HF_SIGLIP_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                        num_attention_heads=12, image_size=224, patch_size=16,
                        hidden_act='gelu_pytorch_tanh', layer_norm_eps=1e-6, num_channels=3,
                        vision_use_head=True)
HF_ACTIVATIONS = {'quick_gelu': 'quick_gelu', 'gelu': 'gelu', 'gelu_pytorch_tanh': 'gelu_tanh',
                  'gelu_new': 'gelu_tanh'}


def _hf_folder(folder: str, architecture: str):
  if not os.path.isdir(folder):
    raise ExportError(f'--input {folder} is not a directory: pass a transformers {architecture} '
                      'folder (config.json + model.safetensors).')
  cfg = _read_json(os.path.join(folder, 'config.json'))
  arch = cfg.get('architectures') or [architecture]
  if architecture not in arch:
    raise ExportError(f'{folder}/config.json is a {arch[0]}, not a {architecture}: use the '
                      'importer of that format.')
  weights = os.path.join(folder, 'model.safetensors')
  if not os.path.isfile(weights):
    for name in ('pytorch_model.bin', 'model.pt'):
      if os.path.isfile(os.path.join(folder, name)):
        raise ExportError(conversion_hint(os.path.join(folder, name)))
    raise ExportError(f'{folder} has no model.safetensors: pass a folder saved with '
                      'save_pretrained(safe_serialization=True).')
  pre = {}
  pre_path = os.path.join(folder, 'preprocessor_config.json')
  if os.path.isfile(pre_path):
    pre = _read_json(pre_path)
  return cfg, weights, pre


def _hf_sub(cfg: dict, key: str, defaults: dict) -> dict:
  return {**defaults, **{k: v for k, v in (cfg.get(key) or {}).items() if v is not None}}


def _hf_activation(v: dict, t: dict, src: str) -> str:
  acts = {v['hidden_act'], t['hidden_act']}
  if len(acts) != 1 or v['hidden_act'] not in HF_ACTIVATIONS:
    _refuse('hidden_act', sorted(acts), src)
  return HF_ACTIVATIONS[v['hidden_act']]


def _hf_preprocess(pre: dict, size: int, mean, std, crop_default: bool = True) -> dict:
  """The processor's recipe: shorter side + centre crop (CLIP) or both sides (SigLIP)."""
  resample = HF_RESAMPLE.get(pre.get('resample', 3), str(pre.get('resample')))
  if resample not in ('bicubic', 'bilinear'):
    _refuse('preprocessor_config resample', pre.get('resample'), 'transformers')
  crop = bool(pre.get('do_center_crop', crop_default))
  target = pre.get('size', {'shortest_edge': size} if crop else {'height': size, 'width': size})
  side = target.get('shortest_edge', target.get('height', size)) if isinstance(
      target, dict) else target
  if int(side) != size or (isinstance(target, dict) and target.get('width', side) != side):
    _refuse('preprocessor_config size', target, 'transformers')
  return dict(size=size, resize='shortest' if crop else 'squash', crop=crop,
              interpolation=resample if crop else f'squash_{resample}',
              mean=list(pre.get('image_mean', mean)), std=list(pre.get('image_std', std)))


def _hf_vision_common(w, v: dict, src: str):
  size, patch = int(v['image_size']), int(v['patch_size'])
  if v.get('num_channels', 3) != 3:
    _refuse('vision_config.num_channels', v['num_channels'], src)
  if size % patch:
    _refuse('vision_config.image_size', size, src + f' (not a multiple of patch {patch})')
  return size, patch


def read_hf_clip(folder: str) -> Imported:
  src = 'transformers CLIPModel'
  cfg, weights, pre = _hf_folder(folder, 'CLIPModel')
  v, t = _hf_sub(cfg, 'vision_config', HF_CLIP_VISION), _hf_sub(cfg, 'text_config', HF_CLIP_TEXT)
  if v['layer_norm_eps'] != t['layer_norm_eps']:
    _refuse('layer_norm_eps', (v['layer_norm_eps'], t['layer_norm_eps']), src)
  eos = int(t['eos_token_id'])
  if eos not in (2, int(t['vocab_size']) - 1):
    _refuse('text_config.eos_token_id', eos, src + ' (pooling at the first end token that is '
            'not the highest id)')
  activation = _hf_activation(v, t, src)
  w = _Weights(read_weights(weights), src)
  size, patch = _hf_vision_common(w, v, src)
  vw, vh = int(v['hidden_size']), int(v['num_attention_heads'])
  tw, th = int(t['hidden_size']), int(t['num_attention_heads'])
  image = dict(width=vw, layers=int(v['num_hidden_layers']), heads=vh,
               mlp_dim=int(v['intermediate_size']), patch=patch, image_size=size, pooling='cls',
               ln_pre=True)
  text = dict(width=tw, layers=int(t['num_hidden_layers']), heads=th,
              mlp_dim=int(t['intermediate_size']), vocab=int(t['vocab_size']),
              length=int(t['max_position_embeddings']), pooling='eot', causal=True)
  pos = w('vision_model.embeddings.position_embedding.weight')
  params = {
      'embed_image': {'proj': _patch(w('vision_model.embeddings.patch_embedding.weight')),
                      'pos': pos[1:]},
      'cls_image': (w('vision_model.embeddings.class_embedding') + pos[0])[None],
      'ln_pre_image': _norm(w('vision_model.pre_layrnorm.weight'),
                            w('vision_model.pre_layrnorm.bias')),
      'encoder_image': _encoder(w, 'vision_model.encoder.layers', image['layers'], vh, HF_BLOCK,
                                'vision_model.post_layernorm'),
      'proj_image': {'kernel': w('visual_projection.weight').T.copy()},
      'embed_text': {'token_embedding': w('text_model.embeddings.token_embedding.weight'),
                     'pos_t': w('text_model.embeddings.position_embedding.weight')},
      'encoder_text': _encoder(w, 'text_model.encoder.layers', text['layers'], th, HF_BLOCK,
                               'text_model.final_layer_norm'),
      'proj_text': {'kernel': w('text_projection.weight').T.copy()},
  }
  params.update(_logit_params(w, 'logit_scale', None))
  for name in list(w.t):   # position_ids buffers of older transformers versions
    if name.endswith('position_ids'):
      w.used.add(name)
  w.done()
  embed_dim = int(cfg.get('projection_dim', params['proj_image']['kernel'].shape[1]))
  preprocess = _hf_preprocess(pre, size, OPENAI_MEAN, OPENAI_STD)
  config = make_config(image, text, embed_dim=embed_dim, activation=activation,
                       eps=v['layer_norm_eps'], mean=preprocess['mean'], std=preprocess['std'],
                       proj_bias=False,
                       temperature=float(np.exp(params['log_temperature_image_text'])),
                       sigmoid=False, tokenizer_file='tokenizer.json',
                       eval_resize=preprocess['interpolation'])
  return Imported(config, params, preprocess, 'clip_bpe',
                  {'format': 'hf_clip', 'folder': os.path.basename(os.path.abspath(folder))})


def read_hf_siglip(folder: str) -> Imported:
  src = 'transformers SiglipModel'
  cfg, weights, pre = _hf_folder(folder, 'SiglipModel')
  v = _hf_sub(cfg, 'vision_config', HF_SIGLIP_VISION)
  t = _hf_sub(cfg, 'text_config', HF_SIGLIP_TEXT)
  if not v['vision_use_head']:
    _refuse('vision_config.vision_use_head', False, src)
  if v['layer_norm_eps'] != t['layer_norm_eps']:
    _refuse('layer_norm_eps', (v['layer_norm_eps'], t['layer_norm_eps']), src)
  activation = _hf_activation(v, t, src)
  w = _Weights(read_weights(weights), src)
  size, patch = _hf_vision_common(w, v, src)
  vw, vh = int(v['hidden_size']), int(v['num_attention_heads'])
  tw, th = int(t['hidden_size']), int(t['num_attention_heads'])
  proj = int(t['projection_size'] or tw)
  if proj != vw:
    _refuse('text_config.projection_size', proj, src + f' (differs from the image width {vw})')
  image = dict(width=vw, layers=int(v['num_hidden_layers']), heads=vh,
               mlp_dim=int(v['intermediate_size']), patch=patch, image_size=size, pooling='map',
               ln_pre=False)
  text = dict(width=tw, layers=int(t['num_hidden_layers']), heads=th,
              mlp_dim=int(t['intermediate_size']), vocab=int(t['vocab_size']),
              length=int(t['max_position_embeddings']), pooling='last', causal=False)
  pv = 'vision_model.head.'
  probe = w(pv + 'probe').reshape(1, vw)
  in_w, in_b = w(pv + 'attention.in_proj_weight'), w(pv + 'attention.in_proj_bias')
  qkv = _qkv(in_w, in_b, vh)
  head = {
      'probe': probe,
      'attn': {'q': {'kernel': qkv['kernel'][:, 0].copy(), 'bias': qkv['bias'][0]},
               'kv': {'kernel': qkv['kernel'][:, 1:].copy(), 'bias': qkv['bias'][1:]},
               'out': _out(w(pv + 'attention.out_proj.weight'), w(pv + 'attention.out_proj.bias'),
                           vh)},
      'norm': _norm(w(pv + 'layernorm.weight'), w(pv + 'layernorm.bias')),
      'mlp': {'wi': _dense(w(pv + 'mlp.fc1.weight'), w(pv + 'mlp.fc1.bias')),
              'wo': _dense(w(pv + 'mlp.fc2.weight'), w(pv + 'mlp.fc2.bias'))}}
  params = {
      'embed_image': {'proj': _patch(w('vision_model.embeddings.patch_embedding.weight'),
                                     w('vision_model.embeddings.patch_embedding.bias')),
                      'pos': w('vision_model.embeddings.position_embedding.weight')},
      'encoder_image': _encoder(w, 'vision_model.encoder.layers', image['layers'], vh, HF_BLOCK,
                                'vision_model.post_layernorm'),
      'map_head_image': head,
      'proj_image': {'kernel': np.eye(vw, dtype=np.float32),
                     'bias': np.zeros((vw,), np.float32)},
      'embed_text': {'token_embedding': w('text_model.embeddings.token_embedding.weight'),
                     'pos_t': w('text_model.embeddings.position_embedding.weight')},
      'encoder_text': _encoder(w, 'text_model.encoder.layers', text['layers'], th, HF_BLOCK,
                               'text_model.final_layer_norm'),
      'proj_text': _dense(w('text_model.head.weight'), w('text_model.head.bias')),
  }
  params.update(_logit_params(w, 'logit_scale', 'logit_bias'))
  for name in list(w.t):
    if name.endswith('position_ids'):
      w.used.add(name)
  w.done()
  if params['embed_image']['pos'].shape[0] != (size // patch) ** 2:
    raise ExportError('SigLIP weights have a position table that does not match image_size / '
                      'patch_size.')
  preprocess = _hf_preprocess(pre, size, (0.5,) * 3, (0.5,) * 3, crop_default=False)
  config = make_config(image, text, embed_dim=vw, activation=activation,
                       eps=v['layer_norm_eps'], mean=preprocess['mean'], std=preprocess['std'],
                       proj_bias=True,
                       temperature=float(np.exp(params['log_temperature_image_text'])),
                       sigmoid=True, tokenizer_file='siglip_spiece.model',
                       eval_resize=preprocess['interpolation'])
  return Imported(config, params, preprocess, 'sentencepiece_siglip',
                  {'format': 'hf_siglip', 'folder': os.path.basename(os.path.abspath(folder))})


# -- checking against the model -----------------------------------------------------------------

def check_structure(params: dict, abstract: dict, where: str = '') -> None:
  """Every parameter of the mmjax model present with its shape, nothing else (ExportError)."""
  for k in sorted(set(abstract) | set(params)):
    name = f'{where}{k}'
    if k not in params:
      raise ExportError(f'the imported weights lack mmjax parameter {name}: the importer does '
                        'not map this model (please report it).')
    if k not in abstract:
      raise ExportError(f'the importer produced {name}, which the mmjax model does not have.')
    a, p = abstract[k], params[k]
    if isinstance(a, dict):
      check_structure(p, a, name + '.')
    elif tuple(np.shape(p)) != tuple(a.shape):
      raise ExportError(f'imported {name} has shape {tuple(np.shape(p))}, the mmjax model '
                        f'{tuple(a.shape)}: the weights do not match their config.')
