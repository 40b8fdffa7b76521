"""CoCa captioning task: the config validates and the loss is the weighted sum of its parts. That
the same steps give the same losses on `data 8` and `data 2 x fsdp 2 x tensor 2` is checked with
SyCoCa on (its NCE, caption and masked-modeling parts) in tests/train/test_generative_sharded.py."""

import os

import numpy as np
import pytest

from mmjax import config as config_lib
from mmjax.evaluate.caption_metrics import caption_scores, names_digit
from mmjax_testing import ROOT, train_steps


def coca_config(*overrides):
  return config_lib.load_config(os.path.join(ROOT, 'configs/coca.py'),
                                ['--config.optimizer.warmup_steps=1',
                                 '--config.tasks.image_caption.batch_size=16', *overrides])


def test_caption_must_name_a_non_text_modality_of_the_task():
  with pytest.raises(config_lib.ConfigError, match='caption'):
    coca_config('--config.tasks.image_caption.caption=video')
  with pytest.raises(config_lib.ConfigError, match='text_instances'):
    coca_config('--config.tasks.image_caption.text_instances=2')


def test_loss_is_weighted_sum_of_contrastive_and_caption_parts():
  _, hist, _ = train_steps(coca_config('--config.tasks.image_caption.caption_weight=0.25',
                                       '--config.tasks.image_caption.contrastive_weight=2.0'),
                           {'data': 1}, 1, 1, task_name='image_caption')
  m = hist[0]
  want = 2.0 * float(m['nce/image_text']) + 0.25 * float(m['caption/image'])
  np.testing.assert_allclose(float(m['loss']), want, rtol=1e-6)
  # Untrained: caption CE is near log(vocab).
  assert abs(float(m['caption/image']) - np.log(512)) < 1.5


def test_names_digit():
  assert names_digit('a handwritten seven.', 7)
  assert not names_digit('a handwritten seven and one', 7)
  assert not names_digit('a handwritten sevens', 7)
  assert not names_digit('a picture of a digit', 3)


def test_caption_scores():
  refs = ['a handwritten seven', 'a messy zero in black and white', 'a small blurry eight']
  perfect = caption_scores(['A handwritten seven.', 'a messy zero in black and white',
                            'a small blurry eight'], refs)
  np.testing.assert_allclose(perfect['bleu4'], 1.0, atol=1e-6)
  worse = caption_scores(['a handwritten one', 'a zero', 'eight'], refs)
  assert worse['bleu4'] < 0.5 and worse['cider'] < perfect['cider']
