"""Every config key with its default; `configs/*.py` start from `base_config()` and change what
they need. A key missing here cannot be set from the command line. Code that may meet a config
saved before a key existed reads it with `setting(node, path)`, which falls back to the default
declared here (`declared(path)`)."""

from __future__ import annotations

import ml_collections

from mmjax.core import modalities
from mmjax.core import objectives as objectives_lib
from mmjax.core import tasks as tasks_lib


def model_config(size: str = 'tiny') -> ml_collections.ConfigDict:
  m = ml_collections.ConfigDict()
  m.size = size                   # tiny | small | base | large (mmjax/core/presets.py)
  m.num_layers = None             # None = from the preset
  m.width = None
  m.num_heads = None
  m.mlp_dim = None
  m.embed_dim = 256               # common embedding space
  m.dtype = 'float32'             # compute dtype: float32 | bfloat16 (params stay float32)
  m.qk_norm = False
  m.pooling = 'mean'              # mean | cls
  m.encoder_sharing = 'shared'    # shared | per_modality (VATT-style modality-specific)
  m.attention_impl = 'auto'       # auto | xla | pallas | cudnn
  m.kv_heads = None               # grouped-query attention: k/v heads (None = num_heads)
  m.scan_layers = False           # Encoder: one lax.scan per run of same-kind blocks (not MoT)
  m.patch_size = 16
  m.tubelet_frames = 4
  m.max_grid = 32                 # largest patch grid side (image/video)
  m.max_frames = 16               # largest number of tubelets in time
  m.max_audio_tokens = 256
  m.max_text_length = 64
  m.vocab_size = 32_128
  # CoCa text decoder, built only when a task has `caption=MODALITY`.
  m.caption_decoder = ml_collections.ConfigDict(dict(unimodal_layers=1, multimodal_layers=1))
  # Light patch decoders of MultiMAE tasks and SyCoCa's masked modeling (masked_decoder.py).
  m.mae_decoder = ml_collections.ConfigDict(dict(layers=2, width=128, num_heads=4, mlp_dim=256))
  m.audio = ml_collections.ConfigDict(dict(
      features='log_mel', sample_rate=16_000, window=400, hop=160, num_mels=128,
      patch_frames=16, patch_mels=16, patch_samples=256))
  m.temperature = ml_collections.ConfigDict(dict(init=0.2, min=0.01, max=1.0))
  # 4M (models/fourm.py): target-decoder depth; per modality the FSQ tokenizer export
  # ('' = the run trains one with these levels/channels/steps, cached beside the dataset).
  m.fourm = ml_collections.ConfigDict(dict(
      decoder_layers=2, tokenizer_levels=(8, 5, 5, 5), tokenizer_channels=(16, 32, 32),
      tokenizer_steps=1000, tokenizers=ml_collections.ConfigDict(dict(image='', audio=''))))
  m.moe = ml_collections.ConfigDict(dict(
      num_experts=0, top_k=1, last_n=0, every=0, router='tokens_choose', capacity_factor=1.25,
      batch_prioritized=False, jitter=0.0, load_balancing_weight=1e-2, z_loss_weight=1e-3,
      impl='auto', mixture_of_transformers=False,
      normalize_combine_weights=False,
      # Routing knobs (mmjax/models/moe/layer.py docstring): tokens per routing group across examples
      # (0 = one example), least expert capacity, dtype of tokens between devices ('' = the
      # model's), load-balancing loss scale ('per_slot': 1 at balance; 'switch': top_k);
      # how dropless claims move between expert devices (mmjax/models/moe/expert_exchange.py).
      group_size=0, min_capacity=0, comm_dtype='', load_balancing_scale='per_slot',
      exchange='auto',
      # Dropless expert parallelism: receive/FFN rows per device = this x the device's claims
      # (0 = the worst case, expert axis x claims, never over); overflow is counted in
      # dropped_fraction (mmjax/models/moe/expert_exchange.py).
      dropless_capacity_factor=2.0))
  # BiFormer routed attention in `layers`; regions: S×S patch windows (image), T×S×S (video),
  # block_size tokens (audio, text); see mmjax/models/regions.py.
  m.routed_attention = ml_collections.ConfigDict(dict(layers=(), block_size=16, top_k=4,
                                                      window=4, window_frames=2))
  # Each block's token mixer, repeated over num_layers: () = all 'attention'; 'mamba' is a
  # bidirectional selective state-space mixer (mmjax/models/mamba.py) configured by `mamba`
  # (state size n, inner width expand*width, dt rank 0 = ceil(width/16), conv width, scan
  # impl auto|xla|pallas, scan chunk 0 = the impl's default). With
  # moe.mixture_of_transformers its Mamba layers are Mixture-of-Mamba (mixture_of_mamba.py).
  m.layer_types = ()
  m.mamba = ml_collections.ConfigDict(dict(state=16, expand=2, dt_rank=0, conv=4, impl='auto',
                                           chunk=0, bidirectional=True))
  # MAELRE token merging (mmjax/models/token_merging.py): after each block in merge_after,
  # bipartite soft matching merges merge_ratio of the tokens (size-weighted); blocks whose
  # input has more than linear_above tokens use size-weighted linear attention (0 = never).
  m.maelre = ml_collections.ConfigDict(dict(merge_after=(), merge_ratio=0.5, linear_above=0))
  # Published-model options (mmjax/models/towers.py; tools.import_weights sets them). Per
  # modality tower: width, num_layers, num_heads, mlp_dim (0 = the keys above; towers of other
  # sizes need encoder_sharing='per_modality'), pooling ('' = model.pooling; mean | cls | eot =
  # at the highest id, CLIP's end token | last | map = attention-pool head), causal attention,
  # ln_pre (a LayerNorm before the encoder) and padding_mask (False: padding is attended, as
  # CLIP's causal and SigLIP's text towers do).
  m.towers = ml_collections.ConfigDict({mod: ml_collections.ConfigDict(dict(
      width=0, num_layers=0, num_heads=0, mlp_dim=0, pooling='', causal=False, ln_pre=False,
      padding_mask=True)) for mod in modalities.names()})
  m.activation = 'gelu_tanh'      # MLP: gelu_tanh | gelu (erf) | quick_gelu (x sigmoid(1.702 x))
  m.norm_eps = 1e-6               # every encoder LayerNorm
  m.pos_embed = 'factorized'      # image positions: factorized (row + column) | full (per cell)
  m.pixel_mean = ()               # per-channel in [0, 1]: pixels (x/255 - mean) / std;
  m.pixel_std = ()                #   () = x / 127.5 - 1
  m.proj_bias = True              # bias of the projections into the common space
  m.contrast_loss = 'softmax'     # softmax (InfoNCE) | sigmoid (SigLIP, with a learnt bias)
  m.logit_bias_init = -10.0       # sigmoid loss: initial bias of the pair logits
  # The other modalities of the table (core/modalities.py): their token budgets and their own
  # option group `model.<modality>`.
  for key, value in modalities.model_keys():
    if key not in m:
      m[key] = value
  for record in modalities.all_records():
    if record.options:
      m[record.name] = ml_collections.ConfigDict(dict(record.options))
  return m


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Per-source seeds (mmjax/seeds.py); None = config.seed.
  c.seeds = ml_collections.ConfigDict(dict(init=None, data=None, sampler=None, dropout=None))
  c.total_steps = 1000
  c.log_every = 10
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.eval_every = 0                # 0 = not during training (python -m mmjax.evaluate after)
  c.data_dir = ''                 # TFDS data dir; '' = $TFDS_DATA_DIR or the TFDS default
  c.init_from = ''                # a params-only export (mmjax.export) to fine-tune from
  c.init_from_hint = ''           # which export init_from needs (said when frozen params lack it)
  c.init_from_only = ()           # regexes: take only these params from init_from (train/partial_init.py)
  c.model = model_config()
  # Axis sizes are totals over all devices. Multi-slice (or multi-host GPU) runs: dcn_<axis> is
  # the part of that axis that crosses slices (or processes) over DCN; num_slices > 1 alone puts
  # the slices on the data axis (mmjax/core/partitioning.py).
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, expert=1, dcn_data=1,
                                          dcn_fsdp=1, dcn_tensor=1, dcn_expert=1, num_slices=0))
  c.optimizer = ml_collections.ConfigDict(dict(
      name='adamw', learning_rate=1e-3, warmup_steps=100, decay_steps=1000,
      end_learning_rate_factor=0.0, b1=0.9, b2=0.999, eps=1e-7, weight_decay=1e-4,
      grad_clip_norm=1.0, freeze=()))  # freeze: regexes of frozen param names (train/freezing.py)
  c.agd = ml_collections.ConfigDict(dict(mode='weighted'))   # weighted | round_robin
  c.text = ml_collections.ConfigDict(dict(tokenizer='', lowercase=True))
  # Host input pipeline (mmjax/data/options.py documents each key).
  c.data = ml_collections.ConfigDict(dict(
      threads=2, prefetch=4, workers=0, cache_mb=1024.0, crop_scale=(0.7, 1.0), flip=False,
      frame_stride=1))
  c.data.eval_resize = ''         # a published model's eval resize (mmjax/data/recipe_resize.py)
  c.tasks = ml_collections.ConfigDict()
  c.evaluation = ml_collections.ConfigDict(dict(datasets=ml_collections.ConfigDict()))
  # Fault handling; `inject_nan_at_steps` is a debugging aid that poisons those steps' batches.
  # Watchdog limits in seconds (0 = off; a phase limit of 0 = watchdog_seconds): a step
  # finishing, start-up + restore, compilation (and evaluation). On by default, with limits no
  # healthy run reaches (a large model compiles for tens of minutes); a hang ends with exit 3
  # and a restart. Preemption signals are agreed across processes every
  # `preemption_check_every` steps (coordination service, no device sync). `lease_seconds`: a
  # workdir lease not renewed for that long is taken over (mmjax/core/lease.py).
  c.faults = ml_collections.ConfigDict(dict(
      max_nonfinite_in_row=5, watchdog_seconds=1800, watchdog_restore_seconds=3600,
      watchdog_compile_seconds=14400, preemption_check_every=10, inject_nan_at_steps=(),
      lease_seconds=120))
  # A jax.profiler trace of steps [start_step, start_step + num_steps) into DIR/tensorboard/
  # (mmjax/train/profiler.py); num_steps=0 traces nothing.
  c.profile = ml_collections.ConfigDict(dict(start_step=10, num_steps=0))
  return c


def digits_model(c: ml_collections.ConfigDict, *, video: bool = False, audio: bool = False
                 ) -> None:
  """Sets the tiny model the mmjax_digits configs share on `c.model`: width 128, 8 px patches
  of up to 64 px images, captions up to 32 tokens of a 512-word vocabulary. `video` adds
  4-frame tubelets (up to 8 frames); `audio`, the log-mel front end of 8 kHz clips (up to 64
  tokens)."""
  m = c.model
  m.size, m.embed_dim, m.patch_size, m.max_grid = 'tiny', 128, 8, 8
  m.max_text_length, m.vocab_size = 32, 512
  m.temperature.init = 0.1
  if video:
    m.tubelet_frames, m.max_frames = 4, 8
  if audio:
    m.max_audio_tokens = 64
    m.audio.sample_rate, m.audio.window, m.audio.hop, m.audio.num_mels = 8000, 256, 128, 32
    m.audio.patch_frames, m.audio.patch_mels = 4, 8


def task(dataset: str, modalities: str, batch_size: int, **kw) -> ml_collections.ConfigDict:
  """One entry of `config.tasks` (see mmjax/core/tasks.py for the fields)."""
  # The shared keys and every objective's keys, with the defaults their records declare
  # (mmjax/core/tasks.py, mmjax/core/objectives.py).
  t = ml_collections.ConfigDict(dict(
      dataset=dataset, modalities=modalities, batch_size=batch_size,
      image_size=None, num_frames=None, audio_samples=None, text_length=None,
      **tasks_lib.config_keys(), **objectives_lib.config_defaults()))
  _add_resolution_fields(t)
  for k, v in kw.items():
    t[k] = v
  return t


def eval_dataset(dataset: str, modalities: str, **kw) -> ml_collections.ConfigDict:
  """One entry of `config.evaluation.datasets` (see mmjax/evaluate/one_model.py for the fields)."""
  e = ml_collections.ConfigDict(dict(
      dataset=dataset, split='test', modalities=modalities, batch_size=128, num_clips=1,
      zero_shot=True, retrieval=True, linear_probe=False, few_shot=False, probe_split='train',
      val_split='',
      image_size=None, num_frames=None, audio_samples=None, text_length=None,
      templates=ml_collections.ConfigDict(), feature_map=ml_collections.ConfigDict(),
      dedup_captions=False, few_shot_l2=1024.0))   # retrieval rule, fewshot_lsr L2 (evaluate/one_model.py)
  _add_resolution_fields(e)
  for k, v in kw.items():
    e[k] = v
  return e


def _add_resolution_fields(entry: ml_collections.ConfigDict) -> None:
  """The input sizes of the modality table's other modalities (core/modalities.py)."""
  for field, default in modalities.resolution_fields():
    if field not in entry:
      entry[field] = default


# -- Reading a key with its declared default --------------------------------------------------
# Code that may meet a config saved before a key existed reads it with `setting`, so the default
# lives only above (not restated in a `.get(key, default)` at every reader).

_DECLARED: dict[str, object] = {}


def declared(path: str):
  """The default declared above for `path`: 'model.moe.top_k', 'tasks.*.caption' (a task's key),
  'evaluation.datasets.*.zero_shot' (an evaluation dataset's)."""
  if not _DECLARED:
    def walk(node, prefix):
      for k, v in node.items():
        _DECLARED[prefix + k] = v
        if isinstance(v, ml_collections.ConfigDict):
          walk(v, prefix + k + '.')
    walk(base_config(), '')
    walk(task('', '', 0), 'tasks.*.')
    walk(eval_dataset('', ''), 'evaluation.datasets.*.')
  if path not in _DECLARED:
    raise KeyError(f'config key {path!r} is not declared in mmjax/config/defaults.py.')
  value = _DECLARED[path]
  return ml_collections.ConfigDict(value) if isinstance(value, ml_collections.ConfigDict) else value


def setting(node, path: str):
  """`node`'s value of the last key of `path`, or its declared default when `node` lacks it:
  `setting(config.model.moe, 'model.moe.top_k')`, `setting(task_cfg, 'tasks.*.caption')`."""
  name = path.rsplit('.', 1)[-1]
  return node[name] if name in node else declared(path)
