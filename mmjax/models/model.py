"""The multimodal model: modality embedding -> shared encoder -> pooled features -> common space.

Each modality passes through the encoder separately (one shared encoder, or one per modality
for the VATT-style baseline). Pooled features are projected per modality into a common
L2-normalised space; labelled datasets get classifier heads on the pooled features.

With `model.moe.mixture_of_transformers` the encoder is a Mixture-of-Transformers (`mot.py`:
per-modality weights, global attention). A task without contrastive pairs then fuses its
modalities: their tokens are concatenated into one sequence, encoded jointly and pooled per
modality from their own tokens. Contrastive tasks keep modalities apart (joint attention would
let each example see its positive).
"""

from __future__ import annotations

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
from flax import nnx

from mmjax.core import modalities as modalities_lib
from mmjax.core.partitioning import constrain
from mmjax.core.tasks import MODALITIES, Task, tasks_from_config
from mmjax.models.embeddings import embedding_class, normalize_input
from mmjax.models.fourm import FourM
from mmjax.models import fusion_heads, objective_outputs, regions, towers
from mmjax.models.encoder import Encoder, routed_layer_indices
from mmjax.models.layers import Dense, LayerNorm, l2_normalize, param
from mmjax.models.mot import MotEncoder
from mmjax.models.mamba import layer_kinds
from mmjax.models.mixture_of_mamba import MixtureOfMambaEncoder
from mmjax.models.token_merging import MaelreEncoder, merging_on
from mmjax.models.masked_decoder import MaskedDecoder, patch_dim
from mmjax.models.text_decoder import AttentionPool, TextDecoder
from mmjax.config.defaults import setting

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What the tasks need of the model: modalities, contrast pairs, classifier heads."""
  modalities: tuple[str, ...]
  pairs: tuple[tuple[str, str], ...]
  heads: tuple[tuple[str, int], ...]       # (head name, classes)
  captions: tuple[str, ...] = ()           # modalities a CoCa text decoder captions
  mae: tuple[str, ...] = ()                # modalities a MultiMAE decoder reconstructs
  sycoca: tuple[str, ...] = ()             # captioned modalities with SyCoCa masked modeling
  fusion_heads: tuple[tuple[str, int, int], ...] = ()  # (name, fan-in / width, classes): M3CoL
  fourm: tuple[str, ...] = ()              # modalities of 4M tasks (discrete tokens)
  # (objective, what its hook needs) for objectives whose hooks own parameters
  # (objective_outputs.OutputHook.spec / build)
  objective_specs: tuple[tuple[str, object], ...] = ()

  @classmethod
  def from_config(cls, config) -> 'ModelSpec':
    tasks = tasks_from_config(config)
    mods = sorted({m for t in tasks for m in t.modalities}, key=MODALITIES.index)
    pairs = sorted({pair_name(*p) for t in tasks for p in t.contrast + t.mil_nce})
    heads = sorted({(head_name(t), t.num_classes) for t in tasks if t.classify and not t.fusion})
    fusion = sorted({h for t in tasks for h in fusion_heads.heads(t)})
    names = [h for h, _ in heads]
    if len(names) != len(set(names)):
      raise ValueError(f'tasks on one dataset disagree on num_classes: {heads}.')
    captions = sorted({t.caption for t in tasks if t.caption}, key=MODALITIES.index)
    mae = sorted({m for t in tasks for m in t.multimae}, key=MODALITIES.index)
    sycoca = sorted({t.caption for t in tasks if t.caption and t.sycoca_weight > 0},
                    key=MODALITIES.index)
    fourm = sorted({m for t in tasks for m in t.fourm}, key=MODALITIES.index)
    pairs = [next(tuple(sorted(p, key=MODALITIES.index)) for t in tasks
                  for p in t.contrast + t.mil_nce if pair_name(*p) == n) for n in pairs]
    specs = tuple((n, s) for n, h in objective_outputs.all_hooks().items()
                  if (s := h.spec(tasks)) is not None)
    return cls(tuple(mods), tuple(pairs), tuple(heads),
               tuple(captions), mae=tuple(mae), sycoca=tuple(sycoca), fusion_heads=tuple(fusion),
               fourm=tuple(fourm), objective_specs=specs)


def pair_name(a: str, b: str) -> str:
  return '_'.join(sorted((a, b), key=MODALITIES.index))


def head_name(task: Task) -> str:
  return 'head_' + re.sub(r'[^0-9a-zA-Z]+', '_', task.dataset).strip('_')


class MultimodalModel(nnx.Module):
  """See module docstring. `cfg` is `config.model`."""

  def __init__(self, cfg, spec: ModelSpec, *, rngs: nnx.Rngs):
    # dtype, pooling and encoder_sharing are checked once, when the config loads (config/checks.py).
    dtype = DTYPES[cfg.dtype]
    self.spec, self.dtype, self.pooling = spec, dtype, cfg.pooling
    self.shared = cfg.encoder_sharing == 'shared'
    # Routed layers route between regions: per modality, its region shape (regions.py).
    self.region_shapes = ({m: regions.region_shape(cfg, m) for m in spec.modalities}
                          if routed_layer_indices(cfg) else None)
    moe = cfg.get('moe', None)
    self.mot = bool(moe is not None and setting(moe, 'model.moe.mixture_of_transformers'))
    if self.mot and (not self.shared or setting(moe, 'model.moe.num_experts')):
      raise ValueError('config.model.moe.mixture_of_transformers already gives each modality its '
                       "own weights: use encoder_sharing='shared' and moe.num_experts=0 with it.")
    if self.mot:
      mot_encoder = MixtureOfMambaEncoder if 'mamba' in layer_kinds(cfg) else MotEncoder
      self.encoder = mot_encoder(cfg, spec.modalities, rngs=rngs, dtype=dtype)
    elif self.shared:
      # MAELRE (model.maelre.merge_after): the encoder with token merging between stages
      self.encoder = (MaelreEncoder if merging_on(cfg) else Encoder)(cfg, rngs=rngs, dtype=dtype)
    self._init_towers(cfg, spec, rngs, dtype)
    for m in spec.modalities:
      mcfg = self.tower_cfgs[m]   # config.model with the modality's tower sizes (towers.py)
      setattr(self, f'embed_{m}', embedding_class(m)(mcfg, rngs=rngs, dtype=dtype))
      setattr(self, f'proj_{m}', Dense(mcfg.width, cfg.embed_dim, ('embed', None), rngs=rngs,
                                       dtype=jnp.float32, use_bias=setting(cfg, 'model.proj_bias')))
      if not self.shared:
        setattr(self, f'encoder_{m}', Encoder(mcfg, rngs=rngs, dtype=dtype))
      if self.pools[m] == 'cls':
        setattr(self, f'cls_{m}', param(rngs, nnx.initializers.normal(0.02), (1, mcfg.width),
                                        (None, 'embed')))
    for name, classes in spec.heads:
      setattr(self, name, Dense(cfg.width, classes, ('embed', None), rngs=rngs,
                                dtype=jnp.float32, kernel_init=nnx.initializers.zeros))
    for name, fan_in, classes in spec.fusion_heads:
      setattr(self, name, Dense(cfg.width * fan_in, classes, ('embed', None), rngs=rngs,
                                dtype=jnp.float32, kernel_init=nnx.initializers.zeros))
    if spec.captions:
      self.text_decoder = TextDecoder(cfg, rngs=rngs, dtype=dtype)
    for m in spec.captions:
      setattr(self, f'attn_pool_{m}', AttentionPool(cfg, rngs=rngs, dtype=dtype))
    for kind, mods in (('mae', spec.mae), ('sycoca', spec.sycoca)):
      for m in mods:
        setattr(self, f'{kind}_decoder_{m}',
                MaskedDecoder(cfg, m, patch_dim(cfg, m), rngs=rngs, dtype=dtype))
    if spec.fourm:  # 4M: token embeddings, target decoder, joint head (fourm.py)
      self.fourm = FourM(cfg, spec.fourm, rngs=rngs, dtype=dtype)
    for name, needs in spec.objective_specs:  # objectives whose hooks own parameters
      objective_outputs.HOOKS[name].build(self, cfg, needs, rngs=rngs, dtype=dtype)
    init_t = float(cfg.temperature.init)
    self.temperature_range = (float(cfg.temperature.min), float(cfg.temperature.max))
    for a, b in spec.pairs:
      setattr(self, f'log_temperature_{a}_{b}',
              nnx.Param(jnp.log(jnp.asarray(init_t, jnp.float32)), logical_axes=()))

  def _init_towers(self, cfg, spec: ModelSpec, rngs, dtype):
    """Published-model options (towers.py): per-modality tower configs, poolings, ln_pre,
    attention-pool heads, pixel mean/std and the sigmoid loss's learnt logit bias."""
    self.tower_cfgs = {m: towers.tower_config(cfg, m) for m in spec.modalities}
    self.pools = {m: towers.pooling(cfg, m) for m in spec.modalities}
    self.padding_mask = {m: bool(towers.tower(cfg, m)['padding_mask']) for m in spec.modalities}
    own = [m for m in spec.modalities if towers.has_own_size(cfg, m)]
    if own and self.shared:
      raise ValueError(f'config.model.towers gives {own} their own size, which a shared encoder '
                       "cannot have: set config.model.encoder_sharing='per_modality'.")
    for m in spec.modalities:
      mcfg = self.tower_cfgs[m]
      if towers.tower(cfg, m)['ln_pre']:
        setattr(self, f'ln_pre_{m}', LayerNorm(mcfg.width, rngs=rngs, dtype=dtype,
                                               eps=towers.norm_eps(cfg)))
      if self.pools[m] == 'map':
        setattr(self, f'map_head_{m}', towers.MapHead(mcfg, rngs=rngs, dtype=dtype))
    mean, std = tuple(setting(cfg, 'model.pixel_mean')), tuple(setting(cfg, 'model.pixel_std'))
    if len(mean) != len(std) or len(mean) not in (0, 3) or any(s <= 0 for s in std):
      raise ValueError('config.model.pixel_mean and pixel_std must both be () or 3 numbers '
                       f'(std > 0), got {mean} and {std}.')
    self.pixel_norm = (mean, std) if mean else None
    self.contrast_loss = setting(cfg, 'model.contrast_loss')
    if self.contrast_loss not in ('softmax', 'sigmoid'):
      raise ValueError("config.model.contrast_loss must be 'softmax' or 'sigmoid', "
                       f'got {self.contrast_loss!r}.')
    if self.contrast_loss == 'sigmoid':
      for a, b in spec.pairs:
        setattr(self, f'logit_bias_{a}_{b}', nnx.Param(
            jnp.asarray(float(setting(cfg, 'model.logit_bias_init')), jnp.float32),
            logical_axes=()))

  def normalize(self, modality: str, x: jax.Array) -> jax.Array:
    """A raw image/video/audio input -> float32: `(x / 255 - mean) / std` for pixels when
    config.model.pixel_mean is set, else `normalize_input` ([-1, 1])."""
    if self.pixel_norm is None or modalities_lib.get(modality).input.dtype != 'uint8' or jnp.issubdtype(
        x.dtype, jnp.floating):
      return normalize_input(modality, x)
    mean, std = (jnp.asarray(v, jnp.float32) for v in self.pixel_norm)
    return (x.astype(jnp.float32) / 255.0 - mean) / std

  def logit_bias(self, a: str, b: str) -> jax.Array:
    """The learnt bias of the sigmoid loss's pair logits (contrast_loss='sigmoid')."""
    a, b = sorted((a, b), key=MODALITIES.index)
    return getattr(self, f'logit_bias_{a}_{b}')[...]

  # -- per modality ---------------------------------------------------------------------------

  def input_tokens(self, modality: str, x: jax.Array, mask: jax.Array | None = None, *,
                   rng=None, drop_rate: float = 0.0):
    """Raw input -> encoder input `[batch, n, width]` and its mask (DropToken and CLS applied).

    With routed layers, image/video patches come window by window and a CLS token has a region
    of its own (`regions.py`), so the encoder's regions are runs of consecutive tokens.
    """
    if modality not in self.spec.modalities:
      raise ValueError(f'the model has no {modality!r} embedding; it was built for '
                       f'{self.spec.modalities}.')
    embed = getattr(self, f'embed_{modality}')
    if modality != 'text':  # normalised before the compute-dtype cast (uint8 -> bf16 is not)
      x = self.normalize(modality, x).astype(self.dtype)
    elif not self.padding_mask['text']:
      mask = None   # the tower attends to padding (CLIP, SigLIP)
    masked = modalities_lib.get(modality).mask is not None   # text, point clouds: (x, mask)
    tokens, tmask = embed(x, mask) if masked else embed(x)
    if self.region_shapes is not None and modalities_lib.get(modality).region == 'grid':
      tokens, tmask = regions.to_windows(tokens, tmask, embed.grid_shape(x.shape),
                                         self.region_shapes[modality])
    if drop_rate > 0.0 and modality != 'text' and rng is not None:
      tokens, tmask = drop_tokens(tokens, tmask, drop_rate, jax.random.fold_in(rng, 7))
    if self.pools[modality] == 'cls':
      cls = getattr(self, f'cls_{modality}')[...].astype(tokens.dtype)
      cls = jnp.broadcast_to(cls[None], (tokens.shape[0], 1, cls.shape[-1]))
      cls_mask = jnp.ones((tmask.shape[0], 1), tmask.dtype)
      if self.region_shapes is not None:
        cls, cls_mask = regions.own_region(cls, cls_mask, self.region_size(modality))
      tokens = jnp.concatenate([cls, tokens], axis=1)
      tmask = jnp.concatenate([cls_mask, tmask], axis=1)
    if hasattr(self, f'ln_pre_{modality}'):
      tokens = getattr(self, f'ln_pre_{modality}')(tokens)
    return constrain(tokens, ('batch', 'length', 'embed')), tmask

  def region_size(self, modality: str) -> int | None:
    """Tokens per routed-attention region of `modality` (None without routed layers)."""
    if self.region_shapes is None:
      return None
    return math.prod(self.region_shapes[modality])

  def pool(self, h: jax.Array, tmask: jax.Array) -> jax.Array:
    """Encoder output `[batch, n, width]` -> float32 `[batch, width]` (CLS token or masked mean)."""
    h = h.astype(jnp.float32)
    if self.pooling == 'cls':
      return h[:, 0]
    w = tmask.astype(jnp.float32)[..., None]
    return (h * w).sum(1) / jnp.maximum(w.sum(1), 1.0)

  def encode_tokens(self, modality: str, x: jax.Array, mask: jax.Array | None = None, *,
                    rng=None, drop_rate: float = 0.0):
    """Raw input -> encoder output `[batch, n, width]`, its mask `[batch, n]` and aux."""
    tokens, tmask = self.input_tokens(modality, x, mask, rng=rng, drop_rate=drop_rate)
    if self.mot:
      # One modality: a Python int selects the plain-matmul fast path (no sort).
      h, aux = self.encoder(tokens, tmask, self.encoder.modality_index(modality), rng=rng)
    else:
      encoder = self.encoder if self.shared else getattr(self, f'encoder_{modality}')
      # One modality without routed windows: its padding is trailing (attention.py).
      h, aux = encoder(tokens, tmask, rng=rng, region_size=self.region_size(modality),
                       trailing_padding=self.region_shapes is None)
    return h, tmask, aux

  def encode(self, modality: str, x: jax.Array, mask: jax.Array | None = None, *,
             rng=None, drop_rate: float = 0.0):
    """Raw input -> pooled features `[batch, width]` (float32) and the encoder's aux; a
    captioned modality (CoCa) is attention-pooled."""
    h, tmask, aux = self.encode_tokens(modality, x, mask, rng=rng, drop_rate=drop_rate)
    return self.pool_tokens(modality, h, tmask, x if modality == 'text' else None), aux

  def pool_tokens(self, modality: str, h: jax.Array, tmask: jax.Array,
                  ids: jax.Array | None = None) -> jax.Array:
    """Encoder output -> float32 `[batch, width]` by the modality's pooling (towers.py); `ids`:
    the text ids ('eot' pooling)."""
    if modality in self.spec.captions:
      return getattr(self, f'attn_pool_{modality}')(h, tmask)
    return towers.pool_tokens(self.pools[modality], h, tmask, ids,
                              getattr(self, f'map_head_{modality}', None))

  def caption_logits(self, ids: jax.Array, h: jax.Array, tmask: jax.Array) -> jax.Array:
    """Decoder inputs `[batch, length]` + encoder tokens -> float32 `[batch, length, vocab]`."""
    return self.text_decoder(ids, h, tmask)

  def encode_joint(self, inputs: dict, *, rng=None, drop_rate: float = 0.0) -> dict:
    """Mixture-of-Transformers fusion: `{modality: (x, mask)}` -> `{modality: pooled}`, all
    modalities encoded as one sequence (each modality's tokens keep their own weights)."""
    parts = []
    for i, (m, (x, mask)) in enumerate(inputs.items()):
      mrng = None if rng is None else jax.random.fold_in(rng, i)
      tokens, tmask = self.input_tokens(m, x, mask, rng=mrng, drop_rate=drop_rate)
      parts.append((m, tokens, tmask))
    if len({t.shape[0] for _, t, _ in parts}) != 1:
      raise ValueError(f'fused modalities {list(inputs)} must have one batch size each; got '
                       f'{[t.shape[0] for _, t, _ in parts]} (several text instances cannot fuse).')
    ids = jnp.concatenate([jnp.full(mk.shape, self.encoder.modality_index(m), jnp.int32)
                           for m, _, mk in parts], axis=1)
    h, _ = self.encoder(jnp.concatenate([t for _, t, _ in parts], axis=1),
                        jnp.concatenate([mk for _, _, mk in parts], axis=1), ids, rng=rng)
    pooled, start = {}, 0
    for m, t, mk in parts:
      pooled[m] = self.pool(h[:, start:start + t.shape[1]], mk)
      start += t.shape[1]
    return pooled

  def project(self, modality: str, pooled: jax.Array) -> jax.Array:
    """Pooled features -> L2-normalised common-space embedding `[batch, embed_dim]`."""
    return l2_normalize(getattr(self, f'proj_{modality}')(pooled))

  def features(self, batch: dict, modality: str) -> jax.Array:
    """Pooled encoder features `[batch, width]` (for linear probes)."""
    x, mask = _inputs(batch, modality)
    return self.encode(modality, x, mask)[0]

  def embed(self, batch: dict, modality: str) -> jax.Array:
    """Common-space embedding `[batch, embed_dim]`; text may be `[batch, n, length]`."""
    x, mask = _inputs(batch, modality)
    lead = x.shape[:-1] if modality == 'text' else x.shape[:1]
    if modality == 'text' and x.ndim == 3:
      x, mask = x.reshape(-1, x.shape[-1]), mask.reshape(-1, mask.shape[-1])
    out = self.project(modality, self.encode(modality, x, mask)[0])
    return out.reshape(*lead, out.shape[-1])

  def temperature(self, a: str, b: str) -> jax.Array:
    a, b = sorted((a, b), key=MODALITIES.index)
    t = jnp.exp(getattr(self, f'log_temperature_{a}_{b}')[...])
    return jnp.clip(t, *self.temperature_range)

  def classify(self, task: Task, pooled: jax.Array) -> jax.Array:
    return getattr(self, head_name(task))(pooled).astype(jnp.float32)

  # -- one task -------------------------------------------------------------------------------

  def __call__(self, batch: dict, task: Task, *, rng=None, train: bool = False) -> dict:
    """Everything the task's objectives need: embeddings, logits and aux, per modality, and
    what their hooks add (masked modeling's `reconstruction`: `{name: {'pred', 'target',
    'mask'}}`); each objective's part is its hook's (objective_outputs.py)."""
    p = objective_outputs.Pass(self, batch, task, rng, train)
    hooks = objective_outputs.hooks(task)
    for hook in hooks:  # MultiMAE, 4M: their own pass
      out = hook.whole_pass(p)
      if out is not None:
        return out
    fused = None
    if self.mot and len(task.modalities) > 1 and not any(h.separate_modalities for h in hooks):
      fused = self.encode_joint({m: _inputs(batch, m) for m in task.modalities}, rng=rng,
                                drop_rate=p.drop_rate)
    for i, m in enumerate(task.modalities):
      x, mask = _inputs(batch, m)
      lead = x.shape[:-1] if (m == 'text' and x.ndim == 3) else None
      if lead is not None:
        x, mask = x.reshape(-1, x.shape[-1]), mask.reshape(-1, mask.shape[-1])
      mrng = None if rng is None else jax.random.fold_in(rng, i)
      if fused is not None:
        pooled, p.aux[m] = fused[m], {}
      else:   # an objective that needs the encoder tokens encodes the modality itself
        got = next((r for r in (h.encode(p, m, x, mask, mrng) for h in hooks) if r is not None),
                   None)
        pooled, p.aux[m] = got if got is not None else self.encode(
            m, x, mask, rng=mrng, drop_rate=p.drop_rate)
      for hook in hooks:
        hook.modality_done(p, m, pooled, lead)
    for hook in hooks:
      hook.finish(p)
    return p.outputs()


def _inputs(batch: dict, modality: str):
  if modality not in batch:
    raise KeyError(f'batch has no {modality!r} input; it has {sorted(batch)}.')
  mask = modalities_lib.get(modality).mask
  return batch[modality], (batch.get(mask) if mask else None)


def drop_tokens(tokens: jax.Array, mask: jax.Array, rate: float, rng):
  """DropToken: keep a random `1 - rate` of each example's tokens `[batch, n, width]`, real
  tokens before padding, in their original order. It breaks routed-attention windows, so the
  config checks refuse it with routed layers."""
  n = tokens.shape[1]
  keep = max(1, int(round(n * (1.0 - rate))))
  priority = jax.random.uniform(rng, tokens.shape[:2]) + (mask == 0).astype(jnp.float32)
  order = jnp.sort(jnp.argsort(priority, axis=1)[:, :keep], axis=1)
  return (jnp.take_along_axis(tokens, order[..., None], axis=1),
          jnp.take_along_axis(mask, order, axis=1))


def build_model(config, rngs: nnx.Rngs) -> MultimodalModel:
  return MultimodalModel(config.model, ModelSpec.from_config(config), rngs=rngs)
