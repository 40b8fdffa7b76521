"""python -m mmjax.train --config=configs/mobileclip.py --workdir=runs/mobileclip --config.data_dir=runs/reinforced

MobileCLIP-style reinforced training on `mmjax_digits`: a small student (2 layers) trained with
image-text InfoNCE plus `distill_weight` x the distillation loss on the similarities of stored
teacher embeddings, replaying the stored crops they were computed on. The full sequence:

  python -m mmjax.train --config=configs/demo.py --workdir=runs/demo
  python -m mmjax.export --workdir=runs/demo --output=runs/demo/export
  python -m tools.reinforce_data --teacher=runs/demo/export --dataset=mmjax_digits \
      --output=runs/reinforced
  python -m mmjax.train --config=configs/mobileclip.py --workdir=runs/mobileclip \
      --config.data_dir=runs/reinforced
  python -m mmjax.evaluate --config=configs/mobileclip.py --workdir=runs/mobileclip \
      --config.data_dir=runs/reinforced

`:no_teacher` is the same student on the same replayed crops with distill_weight=0 (the
baseline). Pointed at a dataset without teacher features it exits 2, naming the
`python -m tools.reinforce_data` command to run. The evaluation (zero-shot, retrieval, linear
probe) is on the plain `mmjax_digits` test split, built under the data dir on first use.
"""

from mmjax.config.defaults import base_config, digits_model, eval_dataset, task

REINFORCED = 'mmjax_digits_reinforced'
DIGITS = 'mmjax_digits'


def get_config(arg=None):
  if arg not in (None, '', 'no_teacher'):
    raise ValueError(f"configs/mobileclip.py takes no argument or 'no_teacher', not {arg!r}.")
  c = base_config()
  c.data_dir = 'runs/reinforced'
  c.total_steps = 600
  c.log_every = 20
  c.checkpoint_every = 300
  digits_model(c)
  c.model.num_layers = 2   # the student: half the demo teacher's depth
  c.optimizer.learning_rate = 1.5e-3
  c.optimizer.warmup_steps = 60
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0  # follows --config.total_steps
  sizes = dict(image_size=32, text_length=16)
  c.tasks.image_text = task(REINFORCED, 'image,text', 32, contrast='image-text',
                            reinforced=True, distill_weight=0.0 if arg == 'no_teacher' else 1.0,
                            teacher_dim=128, teacher_temperature=0.1, **sizes)
  c.evaluation.datasets.digits = eval_dataset(DIGITS, 'image', split='test', batch_size=128,
                                              linear_probe=True, **sizes)
  return c
