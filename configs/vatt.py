"""python -m mmjax.train --config=configs/vatt.py --workdir=runs/vatt
python -m mmjax.evaluate --config=configs/vatt.py --workdir=runs/vatt
python -m mmjax.train --config=configs/vatt.py --workdir=runs/vatt --config.total_steps=1000

VATT's objectives (arXiv 2104.11178) on `mmjax_digits`, small enough for a CPU in a few minutes:
one modality-agnostic encoder over raw inputs (video pixels as tubelets, the audio waveform as
1-D patches, text tokens), video-audio NCE and video-text MIL-NCE with 3 captions per clip (the
dataset's `captions` feature holds 2-4 phrasings of each scan; a clip with 2 gets one masked
instance), and DropToken on video and audio. Zero-shot video (and, through video, audio)
classification on the test split measures the common space.
"""

from mmjax.config.defaults import base_config, digits_model, eval_dataset, task

DIGITS = 'mmjax_digits'
CAPTIONS = 3       # MIL-NCE positives per clip (VATT samples several narrations per clip)
DROP_TOKEN = 0.5   # VATT's DropToken rate on the high-resolution modalities


def get_config(arg=None):
  if arg is not None:
    raise ValueError(f'configs/vatt.py takes no argument, got {arg!r}.')
  c = base_config()
  c.seed = 0
  c.total_steps = 200
  c.log_every = 10
  c.checkpoint_every = 100
  digits_model(c, video=True)
  c.model.max_grid = 4
  c.model.max_frames = 2
  c.model.max_text_length = 16
  c.model.max_audio_tokens = 32
  c.model.audio.features = 'waveform'   # raw samples, as VATT: 4096 samples -> 32 patches
  c.model.audio.sample_rate = 8000
  c.model.audio.patch_samples = 128
  c.optimizer.learning_rate = 1.5e-3
  c.optimizer.warmup_steps = 20
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0  # follows --config.total_steps
  sizes = dict(image_size=32, num_frames=8, audio_samples=4096, text_length=16)
  batch = 32
  c.tasks.video_audio = task(DIGITS, 'video,audio', batch, contrast='video-audio',
                             drop_token=DROP_TOKEN, **sizes)
  c.tasks.video_text = task(DIGITS, 'video,text', batch, mil_nce='video-text',
                            text_instances=CAPTIONS, drop_token=DROP_TOKEN, **sizes)
  c.evaluation.datasets.digits = eval_dataset(
      DIGITS, 'video,audio', split='test', batch_size=120, num_clips=1, **sizes)
  return c
