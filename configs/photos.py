"""python -m tools.bench_data --config=configs/photos.py:photos --config.data_dir=DATA_DIR
python -m mmjax.train --config=configs/photos.py:photos --workdir=runs/photos --config.data_dir=DATA_DIR

One 224 px image-text task (CLIP-style InfoNCE, batch 32) on a dataset converted with
`tools.convert_data` (the argument names it, default `photos`), with the shipped data defaults:
what `tools.bench_data` measures on real-size photos. A small model (patch 32, 7x7 grid), so a
CPU can run a few steps; the data path is the point. Build a corpus to try it with:

  python -m tools.make_photo_corpus --output=/tmp/photos --copies=8
  python -m tools.convert_data csv --input=/tmp/photos/train.csv --path_column=filepath \
      --caption_column=title --output=/tmp/photos_data --name=photos
"""

from mmjax.config.defaults import base_config, task


def get_config(arg=None):
  dataset = arg or 'photos'
  c = base_config()
  c.total_steps = 300
  c.log_every = 10
  c.checkpoint_every = 100
  m = c.model
  m.size, m.embed_dim, m.patch_size, m.max_grid = 'tiny', 128, 32, 7
  m.max_text_length, m.vocab_size = 64, 8000
  c.optimizer.warmup_steps = 30
  c.optimizer.decay_steps = c.get_ref('total_steps') + 0
  c.tasks.image_text = task(dataset, 'image,text', 32, contrast='image-text', image_size=224,
                            text_length=64)
  return c
