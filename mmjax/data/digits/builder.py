"""TFDS builder of `mmjax_digits`: scikit-learn's 1,797 real handwritten digit scans, each as
image, video, audio, a caption and 2-4 captions (different phrasings, for MIL-NCE), and since
1.2.0 its pen strokes as a point cloud and as a pen-trajectory time series (see `render.py`),
written as ArrayRecord files.

Built offline in seconds by `python -m tools.build_data digits` or on first use. Concurrent
builders are safe: a file lock serialises them and TFDS writes into a temporary directory that is
renamed into place only when complete (the SentencePiece model included).
"""

from __future__ import annotations

import contextlib
import os

from etils import epath
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer

from mmjax import paths
from mmjax.data.digits import render
from mmjax.data import tokenizer as tokenizer_lib

NAME = 'mmjax_digits'


class MmjaxDigits(tfds.core.GeneratorBasedBuilder):
  """Handwritten digits in four modalities; train/test split by scan (80/20, stratified)."""

  VERSION = tfds.core.Version('1.2.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.',
                   '1.1.0': '`captions`: 2 to 4 phrasings of each scan (MIL-NCE positives).',
                   '1.2.0': '`point_cloud` (the pen strokes as 64 points) and `time_series` '
                            '(the pen trajectory: x, y, pen down); other features unchanged.'}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS's default probes the package through `importlib_resources`, which is not installed.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    s, t, n, p = render.IMAGE_SIZE, render.NUM_FRAMES, render.AUDIO_SAMPLES, render.NUM_POINTS
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8, encoding='zlib'),
            'video': tfds.features.Tensor(shape=(t, s, s, 3), dtype=np.uint8, encoding='zlib'),
            'audio': tfds.features.Tensor(shape=(n,), dtype=np.float32, encoding='bytes'),
            'caption': tfds.features.Text(),
            'captions': tfds.features.Sequence(tfds.features.Text()),
            'label': tfds.features.ClassLabel(names=render.CLASS_NAMES),
            'id': tfds.features.Scalar(dtype=np.int32),
            'point_cloud': tfds.features.Tensor(shape=(p, 3), dtype=np.float32,
                                                encoding='bytes'),
            'time_series': tfds.features.Tensor(shape=(p, 3), dtype=np.float32,
                                                encoding='bytes'),
        }),
        supervised_keys=('image', 'label'),
        disable_shuffling=True,  # examples stay in scan-id order: a fixed eval order
        metadata=tfds.core.MetadataDict(sample_rate=render.SAMPLE_RATE,
                                        band_hz=list(render.BAND_HZ),
                                        tokenizer=tokenizer_lib.TOKENIZER_FILE),
        homepage='https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: the scans ship with scikit-learn
    scans, labels = render.load_scans()
    ids = render.split_ids(labels)
    captions = [render.caption(labels[i], render.example_params(i)) for i in ids['train']]
    # self.data_dir is TFDS's temporary directory here: the model moves in with the data.
    model_file = os.path.join(self.data_dir, tokenizer_lib.TOKENIZER_FILE)
    tokenizer_lib.train_sentencepiece(captions, model_file)
    _check_class_names(tokenizer_lib.Tokenizer(model_file))
    return {split: self._generate_examples(scans, labels, split_ids)
            for split, split_ids in ids.items()}

  def _generate_examples(self, scans, labels, ids):
    for i in ids:
      params = render.example_params(i)
      points = render.stroke_points(scans[i], i)
      yield int(i), {
          'image': render.render_image(scans[i]),
          'video': render.render_video(scans[i], params),
          'audio': render.render_audio(scans[i], params),
          'caption': render.caption(labels[i], params),
          'captions': render.captions(labels[i], i, params),
          'label': int(labels[i]),
          'id': int(i),
          'point_cloud': points,
          'time_series': render.pen_trajectory(points),
      }


def _check_class_names(tokenizer: tokenizer_lib.Tokenizer) -> None:
  """Each class name must encode to the same known pieces alone and inside every phrasing."""
  for name in render.CLASS_NAMES:
    pieces = tokenizer.tokens(name)
    if tokenizer_lib.UNK_ID in tokenizer.encode([name], 8)[0]:
      raise RuntimeError(f'class name {name!r} has unknown pieces {pieces}.')
    for template in render.TEMPLATES:
      text = tokenizer.tokens(template.format(name))
      if not any(text[i:i + len(pieces)] == pieces for i in range(len(text))):
        raise RuntimeError(f'class name {name!r} encodes as {pieces} alone but not in {text}.')


@contextlib.contextmanager
def _deterministic_serialization():
  """TFDS serializes each tf.train.Example's feature map in hash order, which differs between
  processes; serialize deterministically while we build, so two builds are byte-identical."""
  cls = example_serializer.ExampleSerializer
  original = cls.serialize_example
  cls.serialize_example = lambda self, example: self.get_tf_example(example).SerializeToString(
      deterministic=True)
  try:
    yield
  finally:
    cls.serialize_example = original


def data_root(data_dir: str | None = None) -> str:
  """The TFDS data dir: `data_dir`, else `$TFDS_DATA_DIR`, else TFDS's default."""
  return os.path.expanduser(data_dir or os.environ.get('TFDS_DATA_DIR')
                            or tfds.core.constants.DATA_DIR)


def is_built(data_dir: str | None = None) -> bool:
  return MmjaxDigits(data_dir=data_root(data_dir)).is_prepared()


def build(data_dir: str | None = None) -> MmjaxDigits:
  """Builds the dataset unless present (safe across processes) and returns its builder."""
  root = data_root(data_dir)
  builder = MmjaxDigits(data_dir=root)
  if builder.is_prepared():
    return builder
  os.makedirs(root, exist_ok=True)
  with paths.file_lock(os.path.join(root, f'.{NAME}.lock')):
    builder = MmjaxDigits(data_dir=root)  # another process may have finished meanwhile
    if not builder.is_prepared():
      with _deterministic_serialization():
        builder.download_and_prepare(file_format='array_record')
  return MmjaxDigits(data_dir=root)


def tokenizer_path(builder: tfds.core.DatasetBuilder) -> str:
  return os.path.join(builder.data_dir, tokenizer_lib.TOKENIZER_FILE)
