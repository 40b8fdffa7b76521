"""`python -m mmjax.evaluate --datasets=...` on TFDS specs mocked with `tfds.testing.mock_data`:
curated class names, CLIP's prompt sets, top-1/top-5/mean per-class recall, suite tables,
skipped datasets, and an export left byte-identical."""

import hashlib
import json
import os

import jax
import numpy as np
import pytest

import mock_tfds
from mmjax_testing import demo_config
from mmjax import config as config_lib
from mmjax.data import sources
from mmjax.data.digits import builder as digits_builder
from mmjax.evaluate import __main__ as cli, entries, registry, retrieval
from mmjax.evaluate import workdir as run
from mmjax.core import checkpointing, partitioning
from mmjax.train import state as state_lib

STEP = 3
CIFAR10 = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
  """A demo-config checkpoint (1 layer) whose data dir holds mocked cifar10 and imagenet2012."""
  base = tmp_path_factory.getbasetemp()
  digits = (base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base) / 'tfds'
  digits_builder.build(str(digits))
  root = str(tmp_path_factory.mktemp('bench_tfds'))
  mock_tfds.write_metadata(root, 'cifar10', {'train': 40, 'test': 48})
  mock_tfds.write_metadata(root, 'imagenet2012', {'train': 16, 'validation': 24})
  tokenizer = sources.tokenizer_file('mmjax_digits', str(digits))
  config = demo_config('--config.model.num_layers=1', f'--config.data_dir={root}',
                       f'--config.text.tokenizer={tokenizer}',
                       '--config.evaluation.datasets.digits.batch_size=8')
  workdir = str(tmp_path_factory.mktemp('run'))
  mesh = partitioning.make_mesh({'data': 1}, devices=jax.devices()[:1])
  graphdef, _, shardings = state_lib.abstract_train_state(config, mesh)
  state = state_lib.create_train_state(config, mesh, graphdef, shardings)
  ckpt = checkpointing.Checkpointer(workdir)
  ckpt.save(STEP, {**state, 'step': state['step'] + STEP}, {'agd_step': STEP})
  ckpt.close()
  config_lib.save_config(config, workdir)
  return {'root': root, 'workdir': workdir, 'config': config}


def _tree_bytes(path):
  out = {}
  for d, _, files in os.walk(path):
    for f in files:
      with open(os.path.join(d, f), 'rb') as fh:
        out[os.path.relpath(os.path.join(d, f), path)] = hashlib.sha256(fh.read()).hexdigest()
  return out


def test_cli_benchmarks_report_curated_names_and_clip_templates(bench, tmp_path, capsys):
  out = tmp_path / 'OUT'
  with mock_tfds.mocked():
    code = cli.main([f'--workdir={bench["workdir"]}', '--datasets=cifar10,imagenet2012',
                     f'--output={out}'])
  printed = capsys.readouterr()
  assert code == 0, printed.err[-2000:]
  rep = json.loads((out / f'step_{STEP}.json').read_text())
  cifar, inet = rep['datasets']['cifar10'], rep['datasets']['imagenet2012']
  # The mocked cifar10 labels are '0'..'9'; the report carries CLIP's names instead.
  assert cifar['class_names']['names'] == CIFAR10 and 'CLIP' in cifar['class_names']['source']
  assert inet['class_names']['names'][:3] == ['tench', 'goldfish', 'great white shark']
  assert len(inet['class_names']['names']) == 1000
  ts = inet['templates']['image']
  assert ts['set'] == 'imagenet1k' and ts['count'] == 80 and len(set(ts['templates'])) == 80
  assert ts['templates'][:2] == ['a bad photo of a {}.', 'a photo of many {}.']
  assert 'itap of a {}.' in ts['templates'] and 'a origami {}.' in ts['templates']
  assert cifar['templates']['image']['count'] == 18
  assert (cifar['num_examples'], inet['num_examples']) == (48, 24)
  for name in ('cifar10', 'imagenet2012'):
    zs = rep['zero_shot'][f'{name}/image']
    assert set(zs) == {'top1', 'top5', 'mean_per_class_recall'}
    assert 0.0 <= zs['top1'] <= zs['top5'] <= 1.0 and 0.0 <= zs['mean_per_class_recall'] <= 1.0
  assert rep['step'] == STEP and rep['checkpoint'].endswith(f'step {STEP}')
  # One table per suite (cifar10: image, imagenet2012: imagenet), a bar chart, TensorBoard.
  for suite, name in (('image', 'cifar10'), ('imagenet', 'imagenet2012')):
    table = json.loads((out / f'{suite}.json').read_text())
    assert [r['dataset'] for r in table['rows']] == [name]
    assert table['rows'][0]['top1'] == rep['zero_shot'][f'{name}/image']['top1']
    assert table['step'] == STEP and table['mmjax_version']
    assert f'| {name} |' in (out / f'{suite}.md').read_text()
    assert (out / f'{suite}.png').stat().st_size > 1000
  assert (out / 'plots' / f'confusion_cifar10_image_step_{STEP}.png').exists()
  assert not (out / 'plots' / f'confusion_imagenet2012_image_step_{STEP}.png').exists()  # 1000
  assert os.listdir(out / 'tensorboard')
  assert rep['text_cache'] == {'hits': 0, 'misses': 2}
  assert len(os.listdir(out / 'cache' / 'text')) == 2


def test_unprepared_benchmarks_are_skipped_with_the_command(bench):
  config = bench['config']
  chosen = entries.from_benchmarks(registry.select('cifar10,food101', None), config,
                                   batch_size=8)
  with mock_tfds.mocked():
    ready, skipped = run.split_prepared(chosen, config)
  assert [e.name for e in ready] == ['cifar10']
  assert skipped['food101']['prepare'] == f'tfds build food101 --data_dir={bench["root"]}'
  assert skipped['food101']['suite'] == 'image'


def test_only_unprepared_benchmarks_is_one_sentence(bench, tmp_path, capsys):
  out = tmp_path / 'OUT'
  code = cli.main([f'--workdir={bench["workdir"]}', '--datasets=food101', f'--output={out}'])
  err = capsys.readouterr().err.strip()
  assert code == 2 and err.count('\n') == 0 and 'tfds build food101' in err
  assert not out.exists()


def test_unknown_benchmark_names_the_closest(bench, capsys):
  code = cli.main([f'--workdir={bench["workdir"]}', '--datasets=cifar1O'])
  err = capsys.readouterr().err
  assert code == 2 and "unknown benchmark dataset 'cifar1O'" in err and 'cifar10' in err


def test_evaluating_an_export_leaves_it_byte_identical(bench, tmp_path, capsys):
  from mmjax.export import export_run  # the test builds an export; the library never imports it
  export = str(tmp_path / 'export')
  export_run(bench['workdir'], export, formats='orbax', quiet=True)
  before = _tree_bytes(export)
  code = cli.main([f'--workdir={export}', '--datasets=cifar10'])
  assert code == 2 and 'pass --output' in capsys.readouterr().err  # never written into
  code = cli.main([f'--workdir={export}', '--datasets=cifar10', f'--output={export}/eval'])
  assert code == 2 and 'inside' in capsys.readouterr().err
  out = tmp_path / 'eval_export'
  data_before = _tree_bytes(bench['root'])
  with mock_tfds.mocked():
    code = cli.main([f'--workdir={export}', '--datasets=cifar10', f'--output={out}'])
  assert code == 0, capsys.readouterr().err[-2000:]
  assert _tree_bytes(export) == before
  assert _tree_bytes(bench['root']) == data_before   # nothing written into the data dir
  rep = json.loads((out / f'step_{STEP}.json').read_text())
  assert rep['datasets']['cifar10']['class_names']['names'] == CIFAR10
  # The export's own tokenizer, not the one its config names.
  assert rep['preprocessing']['tokenizer']['model_file'] == os.path.join(export, 'tokenizer.model')
  # A data dir that does not exist: one sentence naming it, exit 2, nothing written.
  code = cli.main([f'--workdir={export}', '--datasets=cifar10', f'--output={tmp_path}/e2',
                   f'--config.data_dir={tmp_path}/no_such_dir'])
  err = capsys.readouterr().err
  assert code == 2 and f'{tmp_path}/no_such_dir does not exist' in err
  assert not os.path.exists(tmp_path / 'e2') and not os.path.exists(tmp_path / 'no_such_dir')


def test_config_entries_on_benchmark_datasets_use_curated_names_and_prompts():
  config = config_lib.load_config(os.path.join(os.path.dirname(__file__), '..', '..',
                                               'configs', 'imp_base.py'))
  by_name = {e.name: e for e in entries.from_config(config)}
  inet, ucf = by_name['imagenet'], by_name['ucf101']
  assert inet.class_names[:2] == ('tench', 'goldfish') and len(inet.class_names) == 1000
  assert inet.templates['image'] == ('imagenet1k', registry.prompt_set('imagenet1k'))
  assert len(inet.templates['image'][1]) == 80
  assert ucf.class_names[0] == 'Apply Eye Makeup' and ucf.templates['video'][0] == 'ucf101'
  digits = entries.from_config(demo_config())[0]   # not a benchmark: the dataset's own names
  assert digits.class_names is None and digits.templates['image'][0] == 'mmjax_digits_image'


def test_registry_sets_are_consistent():
  table = registry.benchmarks()
  for name, b in table.items():
    assert b.modality in ('image', 'video', 'audio') and set(b.kinds) <= set(registry.KINDS)
    assert 'DATA_DIR' in b.prepare or 'convert' in b.prepare
    if 'zero_shot' in b.kinds:
      # CLIP's published ImageNet list names two pairs of classes alike ('missile', 'sunglasses').
      # (ImageNet-A/-R's 200-class subsets hold neither pair twice.)
      repeats = 2 if b.class_set == 'imagenet1k' and not b.label_rule else 0
      assert len(set(b.class_names)) == len(b.class_names) - repeats > 1, name
      assert all(t.count('{}') == 1 for t in b.templates), name
  sizes = {'imagenet2012': 1000, 'cifar100': 100, 'food101': 101, 'sun397': 397, 'cars196': 196,
           'oxford_iiit_pet': 37, 'oxford_flowers102': 102, 'dtd': 47, 'caltech101': 102,
           'ucf101': 101, 'speech_commands': 12}
  for name, n in sizes.items():
    assert len(table[name].class_names) == n, name
  for suite, s in registry.suites().items():
    assert s['datasets'] and all(d in table for d in s['datasets']), suite
  assert registry.select('cifar10', 'retrieval')[0].name == 'coco_captions'


def test_retrieval_scores_every_caption_through_the_runner(bench, tmp_path):
  """6 images with 3 captions each (one caption shared by images 0 and 1), read as ArrayRecord:
  the report's recalls equal a brute-force top-k over all 18 captions (CLIP_benchmark's rule)."""
  from flax import nnx
  from mmjax.data import pipeline, records
  from mmjax.core.tasks import Resolution
  from mmjax.evaluate import one_model as runner
  from mmjax.evaluate.embedder import Embedder
  from mmjax.models.model import build_model
  rng = np.random.default_rng(0)
  words = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight']
  caps = [[f'a {words[i]} and a {words[j + 6]}' for j in range(3)] for i in range(6)]
  caps[1][2] = caps[0][2]
  records.write_records(str(tmp_path / 'test.array_record'),
                        [{'image': rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                          'captions': np.array(c)} for c in caps])
  config = bench['config']
  res = Resolution(image_size=32, text_length=16)
  entry = entries.EvalEntry(name='pairs', dataset=f'arrayrecord:{tmp_path}/{{split}}.array_record',
                            split='test', modalities=('image',), resolution=res, batch_size=8,
                            zero_shot=False)
  model = build_model(config, nnx.Rngs(0))
  rep = runner.evaluate_params(config, model, 1, None, entries=[entry])
  assert rep['datasets']['pairs']['retrieval_pool'] == {
      'items': 6, 'captions': 18, 'distinct_captions': 17, 'candidates': 18,
      'rule': retrieval.EVERY_CAPTION}
  # Brute force, from the model's own embeddings of each item and each caption.
  graphdef, state = nnx.split(model)
  emb = Embedder(config, graphdef, nnx.to_pure_dict(state), partitioning.make_mesh(config.mesh))
  items = emb.collect(pipeline.make_eval_batches(entry.dataset, 'test', ('image',), res, config,
                                                 batch_size=8), ('image',))['image']['embed']
  texts = [c for cs in caps for c in cs]
  ids, mask = pipeline.load_tokenizer(config).encode(texts, 16)
  scores = items @ emb.embed_text(ids, mask).T                       # [6, 18]
  owner = np.repeat(np.arange(6), 3)[None, :] == np.arange(6)[:, None]
  for k in (1, 5, 10):   # right at k: an own caption (item) among the first k of a stable sort
    i2t = np.take_along_axis(owner, np.argsort(-scores, 1, kind='stable')[:, :k], 1).any(1)
    t2i = np.take_along_axis(owner.T, np.argsort(-scores.T, 1, kind='stable')[:, :k], 1).any(1)
    got = rep['retrieval']
    assert got['pairs/image_to_text'][f'R@{k}'] == pytest.approx(np.mean(i2t))
    assert got['pairs/text_to_image'][f'R@{k}'] == pytest.approx(np.mean(t2i))


def test_benchmark_of_a_modality_the_model_lacks_is_skipped(bench):
  """An image-text model asked for cifar10 and speech_commands: audio is skipped, cifar10 runs."""
  from flax import nnx
  from mmjax.evaluate import one_model as runner
  from mmjax.models.model import build_model
  config = bench['config'].copy_and_resolve_references()
  for name in ('video_text', 'audio_text', 'image_classify'):
    del config.tasks[name]
  model = build_model(config, nnx.Rngs(0))
  chosen = entries.from_benchmarks(registry.select('cifar10,speech_commands', None), config,
                                   batch_size=8)
  with mock_tfds.mocked():
    rep = runner.evaluate_params(config, model, 1, None, entries=chosen)
  assert rep['skipped']['speech_commands']['reason'] == 'the model has no audio input.'
  assert set(rep['datasets']) == {'cifar10'} and 'cifar10/image' in rep['zero_shot']


def test_a_pool_of_one_distinct_caption_is_flagged_and_uncaptioned_items_left_out(bench,
                                                                                   tmp_path):
  """Every caption the same (e.g. a tokenizer mix-up): R@1 would read 100, so the pool is
  flagged; an item with an empty caption list is not in the pool."""
  from flax import nnx
  from mmjax.data import records
  from mmjax.core.tasks import Resolution
  from mmjax.evaluate import one_model as runner
  from mmjax.models.model import build_model
  rng = np.random.default_rng(0)
  caps = [['a cat'], ['a cat'], [], ['a cat']]
  records.write_records(str(tmp_path / 'test.array_record'),
                        [{'image': rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                          'captions': np.array(c, dtype=str)} for c in caps])
  entry = entries.EvalEntry(name='same', dataset=f'arrayrecord:{tmp_path}/{{split}}.array_record',
                            split='test', modalities=('image',),
                            resolution=Resolution(image_size=32, text_length=16), batch_size=8,
                            zero_shot=False)
  config = bench['config']
  rep = runner.evaluate_params(config, build_model(config, nnx.Rngs(0)), 1, None,
                               entries=[entry])
  pool = rep['datasets']['same']['retrieval_pool']
  assert pool['items'] == 3 and pool['uncaptioned_items'] == 1
  assert pool['distinct_captions'] == 1 and 'meaningless' in pool['flag']


def _write_png(path, seed: int):
  from PIL import Image
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(path)


def test_flickr_and_coco_retrieval_offline_from_annotation_files(bench, tmp_path, capsys):
  """A Karpathy split JSON (Flickr30k layout) and a COCO captions JSON beside a few PNGs, no
  download: `convert_data karpathy|coco` keeps the split's images and every caption (a repeat
  too), and `--datasets=flickr30k,mscoco_captions` scores them; the recalls equal a brute-force
  top-k over the saved features (CLIP_benchmark's rule)."""
  from mmjax.data import sources
  from tools import convert_data
  images, data, out = tmp_path / 'images', str(tmp_path / 'data'), tmp_path / 'OUT'
  flickr = []   # Karpathy layout: the test split's 3 images, one train image left out
  for i, split in enumerate(['test', 'train', 'test', 'test']):
    _write_png(str(images / f'{100 + i}.png'), i)
    caps = [f'photo {i} caption {j}' for j in range(3)] + (['photo 0 caption 0'] if i == 0 else [])
    flickr.append({'filename': f'{100 + i}.png', 'imgid': i, 'split': split,
                   'sentences': [{'raw': c, 'tokens': c.split(), 'sentid': 10 * i + j}
                                 for j, c in enumerate(caps)]})
  (tmp_path / 'dataset_flickr30k.json').write_text(json.dumps({'images': flickr,
                                                               'dataset': 'flickr30k'}))
  coco_images = [{'id': 9, 'file_name': 'val/9.png'}, {'id': 3, 'file_name': 'val/3.png'}]
  for im in coco_images:
    _write_png(str(images / im['file_name']), im['id'])
  notes = [(3, 'a cat on a mat'), (9, 'a dog'), (3, 'the cat sits'), (9, 'a dog runs')]
  (tmp_path / 'captions_val2017.json').write_text(json.dumps({
      'images': coco_images, 'annotations': [{'id': k, 'image_id': i, 'caption': c}
                                             for k, (i, c) in enumerate(notes)]}))
  tok = bench['config'].text.tokenizer
  for fmt, src, name in (('karpathy', 'dataset_flickr30k.json', 'flickr30k'),
                         ('coco', 'captions_val2017.json', 'mscoco_captions')):
    assert convert_data.main([fmt, f'--input={tmp_path / src}', f'--image_root={images}',
                              '--split=test', f'--output={data}', f'--name={name}',
                              f'--tokenizer={tok}', '--workers=1']) == 0
  stored = sources.open_source('flickr30k', 'test', data).read(range(3), ['captions', 'key'])
  assert [k.decode() if isinstance(k, bytes) else k for k in stored['key']] == ['0', '2', '3']
  assert [len(c) for c in stored['captions']] == [4, 3, 3]   # the repeated caption is kept
  coco = sources.open_source('mscoco_captions', 'test', data).read(range(2), ['captions'])
  assert [[c.decode() if isinstance(c, bytes) else c for c in cs] for cs in coco['captions']] == [
      ['a cat on a mat', 'the cat sits'], ['a dog', 'a dog runs']]     # images by id
  capsys.readouterr()
  code = cli.main([f'--workdir={bench["workdir"]}', '--datasets=flickr30k,mscoco_captions',
                   f'--output={out}', '--save_features', f'--config.data_dir={data}'])
  assert code == 0, capsys.readouterr().err[-2000:]
  rep = json.loads((out / f'step_{STEP}.json').read_text())
  for name, captions, items in (('flickr30k', 10, 3), ('mscoco_captions', 4, 2)):
    pool = rep['datasets'][name]['retrieval_pool']
    assert (pool['items'], pool['captions'], pool['rule']) == (items, captions,
                                                               retrieval.EVERY_CAPTION)
    saved = np.load(out / rep['datasets'][name]['features'])
    scores = saved['image'] @ saved['text'].T                      # [items, captions]
    owner = saved['text_item'][None, :] == np.arange(items)[:, None]
    for k in (1, 5, 10):
      i2t = np.take_along_axis(owner, np.argsort(-scores, 1, kind='stable')[:, :k], 1).any(1)
      t2i = np.take_along_axis(owner.T, np.argsort(-scores.T, 1, kind='stable')[:, :k], 1).any(1)
      assert rep['retrieval'][f'{name}/image_to_text'][f'R@{k}'] == pytest.approx(np.mean(i2t))
      assert rep['retrieval'][f'{name}/text_to_image'][f'R@{k}'] == pytest.approx(np.mean(t2i))
