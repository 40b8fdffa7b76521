"""Several captions per example (MIL-NCE): K drawn without replacement, padded and masked."""

import numpy as np
import pytest

from mmjax.data import pipeline, sources
from mmjax.data.batching import BatchBuilder
from mmjax.data.options import DataOptions
from mmjax.data.digits import render
from mmjax.data.errors import DataError
from mmjax.core.tasks import Resolution, Task


def task(instances, feature_map=(), batch=16):
  return Task(name='vt', dataset='mmjax_digits', split='train', modalities=('video', 'text'),
              batch_size=batch, resolutions=(Resolution(image_size=16, num_frames=4,
                                                        text_length=16),),
              mil_nce=(('video', 'text'),), text_instances=instances,
              feature_map=tuple(feature_map))


def test_digits_has_several_phrasings_per_scan_and_keeps_its_single_caption(digits_dir):
  src = sources.open_source('mmjax_digits', 'train', digits_dir)
  cols = src.read(range(0, len(src), 7), ['caption', 'captions', 'id', 'label'])
  counts = [len(c) for c in cols['captions']]
  assert min(counts) == render.MIN_CAPTIONS and max(counts) == render.MAX_CAPTIONS
  for one, many, sid, label in zip(cols['caption'], cols['captions'], cols['id'], cols['label']):
    assert one == render.caption(label, render.example_params(sid)) == many[0]
    assert len(set(many)) == len(many)  # different phrasings
    assert all(render.CLASS_NAMES[label] in c for c in many)


def test_loader_gives_k_distinct_captions_padded_and_masked(data_config):
  k = 3
  _, source, mapping, tokenizer = pipeline._plan(task(k), data_config, cache=False)
  assert mapping['text'] == 'captions'
  indices = np.arange(40)
  captions = source.read(indices, ['captions'])['captions']
  encoded = [{tuple(tokenizer.encode([c], 16)[0][0]) for c in caps} for caps in captions]
  batch = next(pipeline.make_train_iterator(task(k), data_config, seed=0))
  assert batch['text'].shape == (16, k, 16) and batch['text_mask'].shape == (16, k, 16)
  builder = BatchBuilder(source, mapping, task(k).resolution,
                                  DataOptions.from_config(data_config), tokenizer,
                                  text_instances=k)
  seen = [set() for _ in indices]
  for seed in range(12):
    out = builder(indices, np.random.default_rng(seed))
    ids, mask = out['text'], out['text_mask']
    assert np.array_equal(mask, (ids != 0).astype(np.int32))
    for i, caps in enumerate(captions):
      real = mask[i].any(-1)
      assert real.sum() == min(k, len(caps)) and real[:real.sum()].all()
      rows = [tuple(r) for r in ids[i][real]]
      assert len(set(rows)) == len(rows) and set(rows) <= encoded[i]  # without replacement
      assert not ids[i][~real].any()
      seen[i] |= set(rows)
  assert all(s == e for s, e in zip(seen, encoded))  # every caption gets drawn
  eval_out = builder(indices, None)  # deterministic: the first K
  first = [tuple(r) for r in eval_out['text'][0][eval_out['text_mask'][0].any(-1)]]
  assert first == [tuple(tokenizer.encode([c], 16)[0][0]) for c in captions[0][:k]]


def test_one_caption_per_example_still_reads_the_single_caption(data_config):
  _, _, mapping, _ = pipeline._plan(task(1), data_config, cache=False)
  assert mapping['text'] == 'caption'
  batch = next(pipeline.make_train_iterator(task(1), data_config, seed=0))
  assert batch['text'].shape == (16, 16)


def test_several_instances_from_a_single_caption_field_is_one_sentence(data_config):
  with pytest.raises(DataError) as e:
    pipeline.validate_task(task(3, feature_map=(('caption', 'text'),)), data_config)
  msg = str(e.value)
  assert msg == ("Task 'vt' asks for 3 captions per example (text_instances, for MIL-NCE) but "
                 "dataset 'mmjax_digits' has only the single caption field 'caption': map a "
                 'feature holding several captions with feature_map={"<feature>": "text"} or '
                 'set text_instances=1.')
