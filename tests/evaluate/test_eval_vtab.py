"""VTAB / CLIP_benchmark sets: labels derived from other features as VTAB defines each task,
CLIP_benchmark's class names and prompts, on TFDS specs mocked offline (`mock_tfds`)."""

import os

import numpy as np
import pytest

import mock_tfds
from mmjax_testing import demo_config
from mmjax.data import sources
from mmjax.data.digits import builder as digits_builder
from mmjax.evaluate import entries, labels, one_model as runner, registry
from mmjax.evaluate.errors import EvalError


@pytest.fixture(scope='module')
def tokenizer(tmp_path_factory):
  """The digits tokenizer (the dataset shared by the session's tests), so no data dir needs it."""
  base = tmp_path_factory.getbasetemp()
  digits = (base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base) / 'tfds'
  digits_builder.build(str(digits))
  return sources.tokenizer_file('mmjax_digits', str(digits))


class _Source:
  """The part of a data Source `labels.derive` reads: name, features, len, read."""

  def __init__(self, columns: dict):
    self.name, self.features, self._columns = 'fake', dict.fromkeys(columns), columns

  def __len__(self):
    return len(next(iter(self._columns.values())))

  def read(self, indices, names):
    return {n: [self._columns[n][i] for i in indices] for n in names}


def test_label_rules_match_vtab_by_hand():
  subset = {'rule': 'subset', 'feature': 'label', 'indices': [6, 11, 13]}
  assert labels.derive(subset, _Source({'label': [13, 6, 11, 13]})).tolist() == [2, 0, 1, 2]
  with pytest.raises(EvalError, match='outside its 3-class subset'):
    labels.derive(subset, _Source({'label': [6, 7]}))
  count = {'rule': 'count', 'feature': 'objects/size', 'offset': -3}
  sizes = [np.zeros(k) for k in (3, 10, 5)]
  assert labels.derive(count, _Source({'objects/size': sizes})).tolist() == [0, 7, 2]
  # clevr: the nearest object's depth, bins above 0, 8, 8.5, 9, 9.5, 10 (a depth on a threshold
  # belongs to the bin below it).
  clevr = registry.benchmarks()['clevr_closest_object_distance'].label_rule
  coords = [np.array([[1, 2, 9.2], [3, 4, 8.4]]), np.array([[0, 0, 8.0]]),
            np.array([[0, 0, 10.5], [0, 0, 12.0]])]
  assert labels.derive(clevr, _Source({'objects/pixel_coords': coords})).tolist() == [1, 0, 5]
  # kitti: only Car/Van/Truck (type < 3) count; none -> 1000 m -> the 'no car' class.
  kitti = registry.benchmarks()['kitti_closest_vehicle_distance'].label_rule
  loc = [np.array([[0, 0, 5.0], [0, 0, 30.0]]), np.array([[0, 0, 4.0]]),
         np.array([[0, 0, 8.0]]), np.array([[0, 0, 12.0], [0, 0, 19.0]]), np.zeros((0, 3))]
  kinds = [np.array([3, 0]), np.array([5]), np.array([2]), np.array([1, 0]), np.zeros(0)]
  assert labels.derive(kitti, _Source({'objects/location': loc, 'objects/type': kinds})
                       ).tolist() == [2, 3, 0, 1, 3]


def test_vtab_sets_derive_labels_and_use_clip_benchmark_names_through_the_runner(tokenizer,
                                                                               tmp_path):
  from flax import nnx
  from mmjax.core import partitioning
  from mmjax.data import pipeline
  from mmjax.evaluate.embedder import Embedder
  from mmjax.evaluate.text_cache import TextCache
  from mmjax.models.model import build_model
  root = str(tmp_path / 'tfds')
  counts = [3, 5, 10, 4]
  clevr = mock_tfds.fake_examples(root, 'clevr', 4, seed=1)
  rng = np.random.default_rng(0)
  for ex, k in zip(clevr, counts):   # each scene its own number of objects and depths
    ex['objects'] = {f: v[:k] for f, v in ex['objects'].items()}
    ex['objects']['pixel_coords'][:, 2] = rng.uniform(7.5, 10.5, k)
  mock_tfds.write_examples(root, 'clevr', {'validation': clevr})
  kitti = mock_tfds.fake_examples(root, 'kitti', 4, seed=2)
  for i, ex in enumerate(kitti):   # example 0: no vehicle
    ex['objects']['type'] = rng.permutation([3, 0, 1, 4, 2, 7, 6, 5, 3, 3]) if i else \
        np.full(10, 3)
    ex['objects']['location'][:, 2] = rng.uniform(2.0, 40.0, 10)
    box = ex['objects']['bbox']   # the generator's boxes may have min > max: ordered here
    ex['objects']['bbox'] = np.concatenate([np.minimum(box[:, :2], box[:, 2:]),
                                            np.maximum(box[:, :2], box[:, 2:])], 1)
  mock_tfds.write_examples(root, 'kitti', {'test': kitti})
  norb = mock_tfds.fake_examples(root, 'smallnorb', 4, seed=3)
  mock_tfds.write_examples(root, 'smallnorb', {'test': norb})
  sprites = mock_tfds.fake_examples(root, 'dsprites', 4, seed=4)
  mock_tfds.write_examples(root, 'dsprites', {'train': sprites})
  config = demo_config('--config.model.num_layers=1', f'--config.data_dir={root}',
                       f'--config.text.tokenizer={tokenizer}')
  for name in ('video_text', 'audio_text', 'image_classify'):   # an image-text model is enough
    del config.tasks[name]
  names = ('clevr_count_all,clevr_closest_object_distance,kitti_closest_vehicle_distance,'
           'smallnorb_label_azimuth,dsprites_label_x_position')
  chosen = entries.from_benchmarks(registry.select(names, None), config, batch_size=8)
  graphdef, state = nnx.split(build_model(config, nnx.Rngs(0)))
  embedder = Embedder(config, graphdef, nnx.to_pure_dict(state),
                      partitioning.make_mesh(config.mesh))
  tok = pipeline.load_tokenizer(config)
  cache = TextCache(embedder, tok, 'vtab')
  out = tmp_path / 'out'   # what evaluate_params does per dataset, without its plots
  rep = {'datasets': {e.name: runner.evaluate_entry(embedder, config, e, tok, cache,
                                                    str(out / 'features'))['results']
                      for e in chosen}}

  def closest(rows, column, thresholds, keep=None, missing=np.inf):
    got = []
    for i, r in enumerate(rows):
      d = np.asarray(r)[:, column] if keep is None else np.asarray(r)[keep[i], column]
      got.append(int((np.array(thresholds) < (d.min() if len(d) else missing)).sum()) - 1)
    return got

  expect = {
      'clevr_count_all': [k - 3 for k in counts],
      'clevr_closest_object_distance': closest(
          [ex['objects']['pixel_coords'] for ex in clevr], 2, [0, 8, 8.5, 9, 9.5, 10, 100]),
      'kitti_closest_vehicle_distance': closest(
          [ex['objects']['location'] for ex in kitti], 2, [-100, 8, 20, 999],
          keep=[ex['objects']['type'] < 3 for ex in kitti], missing=1000.0),
      'smallnorb_label_azimuth': [int(ex['label_azimuth']) for ex in norb],
      'dsprites_label_x_position': [int(ex['label_x_position']) for ex in sprites]}
  assert expect['kitti_closest_vehicle_distance'][0] == 3   # no vehicle
  names_expected = {
      'clevr_count_all': ['three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten'],
      'kitti_closest_vehicle_distance': [
          'a photo i took of a car on my left or right side.',
          'a photo i took with a car nearby.', 'a photo i took with a car in the distance.',
          'a photo i took with no car.'],
      'smallnorb_label_azimuth': [str(i) for i in range(18)],
      'dsprites_label_x_position': [str(i) for i in range(32)]}
  for name, want in expect.items():
    res = rep['datasets'][name]
    saved = np.load(out / res['features'])
    assert saved['label'].tolist() == want, name
    if name in names_expected:
      assert res['class_names']['names'] == names_expected[name], name
    assert 0.0 <= res['zero_shot']['image']['top1'] <= 1.0
  assert rep['datasets']['clevr_count_all']['templates']['image']['templates'] == [
      'a picture of {} objects']
  assert rep['datasets']['clevr_count_all']['class_names']['derived'] == {
      'rule': 'count', 'feature': 'objects/size', 'offset': -3}
  assert len(rep['datasets']['smallnorb_label_azimuth']['templates']['image']['templates']) == 4


def test_imagenet_a_and_r_score_their_200_classes():
  table = registry.benchmarks()
  inet = table['imagenet2012'].class_names
  for name, first in (('imagenet_a', [6, 11, 13, 15, 17]), ('imagenet_r', [1, 2, 4, 6, 8])):
    b = table[name]
    rule = b.label_rule
    assert rule['rule'] == 'subset' and len(rule['indices']) == 200 and rule['indices'][:5] == first
    assert list(rule['indices']) == sorted(set(rule['indices']))
    assert b.class_names == tuple(inet[i] for i in rule['indices']) and len(b.templates) == 80
  assert table['imagenet_a'].class_names[:4] == ('stingray', 'goldfinch', 'junco',
                                                  'American robin')
