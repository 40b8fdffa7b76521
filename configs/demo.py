"""python -m mmjax.train --config=configs/demo.py --workdir=runs/demo
python -m mmjax.train --config=configs/demo.py --workdir=runs/demo --config.total_steps=100

The demo: AGD over image-, video- and audio-text tasks and digit classification on
`mmjax_digits` (built locally), tiny encoder, CPU in minutes.

`configs/demo.py:moe` swaps in the tiny MoE encoder (see configs/demo_moe.py).
"""

from mmjax.config.defaults import base_config, digits_model, eval_dataset, task

DIGITS = 'mmjax_digits'


def get_config(arg=None):
  if arg not in (None, 'moe'):
    raise ValueError(f"configs/demo.py takes no argument or ':moe', got {arg!r}.")
  c = base_config()
  c.seed = 0
  c.total_steps = 2400
  c.log_every = 20
  c.checkpoint_every = 400
  digits_model(c, video=True, audio=True)
  c.optimizer.learning_rate = 1.5e-3
  c.optimizer.warmup_steps = 200
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0  # follows --config.total_steps
  c.optimizer.weight_decay = 1e-4
  sizes = dict(image_size=32, num_frames=8, audio_samples=4096, text_length=16)
  batch = 32
  # Image is the easy modality; video and audio get more of the steps.
  c.tasks.image_text = task(DIGITS, 'image,text', batch, contrast='image-text', weight=0.7,
                            **sizes)
  c.tasks.video_text = task(DIGITS, 'video,text', batch, contrast='video-text', weight=1.6,
                            **sizes)
  c.tasks.audio_text = task(DIGITS, 'audio,text', batch, contrast='audio-text', weight=1.2,
                            **sizes)
  c.tasks.image_classify = task(DIGITS, 'image', batch, classify='image', num_classes=10,
                                weight=0.4, **sizes)
  c.evaluation.datasets.digits = eval_dataset(
      DIGITS, 'image,video,audio', split='test', batch_size=128, num_clips=1, linear_probe=True,
      **sizes)
  if arg == 'moe':
    c.model.moe.num_experts = 4
    c.model.moe.top_k = 1
    c.model.moe.every = 2
  return c
