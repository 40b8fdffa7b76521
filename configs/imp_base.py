"""python -m tools.aot --config=configs/imp_base.py --topology=v5p-256
python -m mmjax.train --config=configs/imp_base.py --workdir=runs/imp_base \
    --config.text.tokenizer=t5/spiece.model --config.data_dir=tensorflow_datasets

IMP-B (arXiv 2305.06324): dense 12-layer, width-768 encoder trained by alternating gradient
descent over image-text, video and image classification, with the paper's encoder shapes.

Public TFDS datasets: `coco_captions` (image-text NCE), `ucf101/ucf101_1_256` (video
classification), `imagenet2012` (image classification), `speech_commands` (audio
classification). Prepare them once where TensorFlow is installed (mmjax reads the result, TFRecord
or ArrayRecord, without it):
    tfds build coco_captions ucf101/ucf101_1_256 speech_commands --data_dir=tensorflow_datasets
    tfds build imagenet2012 --data_dir=tensorflow_datasets  # tars in its downloads/manual first
Your own image-text, video or audio data instead: `python -m tools.convert_data` (README "Bring
your data"), then --config.tasks.coco_image_text.dataset=NAME. Text is T5 SentencePiece: pass its
`spiece.model` with --config.text.tokenizer. `imp_config()` is shared with
configs/imp_moe_{base,large}.py.
"""

from mmjax.config.defaults import base_config, task

T5_VOCAB = 32_100          # T5 SentencePiece ids
VOCAB = 32_128             # rounded up to a multiple of 128 so the `vocab` axis shards evenly
IMAGE = 256                # pixels: 16x16 patches of 16 px -> 256 tokens
FRAMES = 16                # video frames (stride 2 in the source) -> 4x16x16 = 1024 tubelets
AUDIO_SAMPLES = 400 + 127 * 160   # 16 kHz, 25 ms window, 10 ms hop -> exactly 128 frames
TEXT = 16                  # caption tokens


def imp_config(size: str = 'base', moe: bool = False):
  """IMP-B / IMP-L, dense or MoE (16 experts in the last 6 layers, QK LayerNorm)."""
  large = size == 'large'
  c = base_config()
  c.total_steps = 500_000
  c.log_every = 100
  c.checkpoint_every = 5_000
  c.keep_checkpoints = 3
  # A hung host (a stuck collective, a dead input worker) exits with every thread's stack so
  # the scheduler restarts the job: 10 min for a step, 1 h for start-up/restore and compiling.
  c.faults.watchdog_seconds = 600
  c.faults.watchdog_restore_seconds = 3600
  c.faults.watchdog_compile_seconds = 3600

  # --- model ---------------------------------------------------------------------------------
  m = c.model
  m.size = size                     # base: 12 x 768, 12 heads, MLP 3072; large: 24 x 1024, 16, 4096
  m.dtype = 'bfloat16'
  m.embed_dim = 512                 # common space (the paper does not fix it; CLIP-B's size)
  m.qk_norm = moe
  m.patch_size = 16
  m.tubelet_frames = 4
  m.max_grid = IMAGE // 16          # 16 patches a side
  m.max_frames = FRAMES // 4        # 4 tubelets in time
  m.max_text_length = TEXT
  m.vocab_size = VOCAB
  m.audio.features = 'log_mel'
  m.audio.sample_rate, m.audio.window, m.audio.hop = 16_000, 400, 160
  m.audio.num_mels = 128            # 128 mel bins x 128 frames, 16 x 16 patches -> 64 tokens
  m.audio.patch_frames = 16
  m.audio.patch_mels = 16
  m.max_audio_tokens = 8            # time patches: 128 frames / 16
  m.temperature.init = 1.0 if moe else 0.2
  if moe:
    m.moe.num_experts = 16
    m.moe.last_n = 6
    m.moe.top_k = 1
    m.moe.router = 'tokens_choose'
    m.moe.capacity_factor = 1.25
    m.moe.batch_prioritized = True
    m.moe.normalize_combine_weights = False

  # --- mesh: -1 is the rest of the slice, so one config fits v5p-128 and v5p-256 alike ---------
  # IMP-B: data x fsdp 8 (sharding the Adam update cuts HBM traffic more than it adds network);
  # IMP-MoE-B: data x expert 16; IMP-L: expert 16 x fsdp over the rest (4 on a v5p-128, 8 on a
  # v5p-256). README "Planning a pod run" has the dry-run numbers.
  c.mesh.data = 1 if large else -1
  c.mesh.fsdp = -1 if large else (1 if moe else 8)
  c.mesh.tensor = 1
  c.mesh.expert = 16 if moe else 1  # one expert per device along the expert axis

  # --- optimizer -----------------------------------------------------------------------------
  o = c.optimizer
  o.learning_rate = 5e-4 if large else 1e-3
  o.warmup_steps = 50_000 if large else 25_000
  o.decay_steps = c.get_ref('total_steps') + 0  # follows --config.total_steps
  o.b1, o.b2, o.eps, o.weight_decay = 0.9, 0.999, 1e-7, 1e-4

  # --- tasks (AGD): batch 8192 for image-text, 2048 for classification -------------------------
  c.tasks.coco_image_text = task(
      'coco_captions', 'image,text', 8192, contrast='image-text', image_size=IMAGE,
      text_length=TEXT, feature_map={'image': 'image', 'captions/text': 'text'})
  c.tasks.ucf101_video = task(
      'ucf101/ucf101_1_256', 'video', 2048, classify='video', num_classes=101,
      image_size=IMAGE, num_frames=FRAMES, drop_token=0.75)
  c.tasks.imagenet_image = task(
      'imagenet2012', 'image', 2048, classify='image', num_classes=1000, image_size=IMAGE)
  c.tasks.speech_commands_audio = task(
      'speech_commands', 'audio', 2048, classify='audio', num_classes=12,
      audio_samples=AUDIO_SAMPLES)

  # --- zero-shot evaluation ------------------------------------------------------------------
  c.evaluation.datasets.imagenet = dict(
      dataset='imagenet2012', split='validation', modalities='image', batch_size=1024,
      num_clips=1, image_size=IMAGE, text_length=TEXT)
  c.evaluation.datasets.ucf101 = dict(
      dataset='ucf101/ucf101_1_256', split='test', modalities='video', batch_size=256,
      num_clips=1, image_size=IMAGE, num_frames=FRAMES, text_length=TEXT)
  return c


def get_config(arg=None):
  if arg is not None:
    raise ValueError(f'configs/imp_base.py takes no argument, got {arg!r}.')
  return imp_config('base', moe=False)
