"""The noise `mmjax.log_filters` drops: TFDS's missing dataset_info.json while building and
tensorboardX renaming `@` tags; and mmjax's own TensorBoard tags need no renaming."""

import logging

from absl import logging as absl_logging

from mmjax import log_filters
from mmjax.evaluate import suite_report


class _Records(logging.Handler):
  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_tfds_and_tensorboardx_noise_is_dropped_real_lines_pass():
  log_filters.filter_known_noise()
  handler = _Records()
  absl, tbx = absl_logging.get_absl_logger(), logging.getLogger('tensorboardX.summary')
  absl.addHandler(handler)
  tbx.addHandler(handler)
  tbx.setLevel(logging.INFO)
  try:
    absl_logging.warning('Variant folder /d/mmjax_digits/1.1.0 has no dataset_info.json')
    tbx.info('Summary name eval/retrieval/R@10 is illegal; using eval/retrieval/R_10 instead.')
    absl_logging.warning('dataset_info.json of /d/x is damaged')
    tbx.info('Summary name x written')
  finally:
    absl.removeHandler(handler)
    tbx.removeHandler(handler)
  assert handler.messages == ['dataset_info.json of /d/x is damaged', 'Summary name x written']


def test_tensorboard_tags_are_legal_as_written():
  import re
  tag = suite_report.scalar_tag('eval', 'retrieval', 'digits/image_to_text', 'R@10')
  assert tag == 'eval/retrieval/digits/image_to_text/R_at_10'
  assert re.fullmatch(r'[-/\w.]+', suite_report.scalar_tag('eval', 'zero_shot', 'a:b c', 'top1'))
