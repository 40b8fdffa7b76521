"""Zero-shot classifier maths against an independent numpy implementation; templates."""

import numpy as np
import pytest

from mmjax.data.digits import render as digits_render
from mmjax.evaluate import retrieval, templates, zero_shot


def _numpy_weights(text_emb):
  out = []
  for c in range(text_emb.shape[0]):
    rows = [v / np.sqrt(np.sum(v * v)) for v in text_emb[c].astype(np.float64)]
    mean = np.sum(rows, axis=0) / len(rows)
    out.append(mean / np.sqrt(np.sum(mean * mean)))
  return np.stack(out)


def test_classifier_weights_matches_numpy():
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(7, 5, 12)) * rng.uniform(0.1, 10, size=(7, 5, 1))  # unequal norms
  w = zero_shot.classifier_weights(emb)
  assert w.shape == (7, 12)
  np.testing.assert_allclose(w, _numpy_weights(emb), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-5)


def test_classifier_weights_normalises_before_averaging():
  # A long prompt vector must not dominate: [10, 0] and [0, 1] average to the diagonal.
  w = zero_shot.classifier_weights(np.array([[[10.0, 0.0], [0.0, 1.0]]]))
  np.testing.assert_allclose(w, [[np.sqrt(0.5), np.sqrt(0.5)]], rtol=1e-6)
  with pytest.raises(ValueError, match=r'\[classes, templates, dim\]'):
    zero_shot.classifier_weights(np.zeros((3, 4)))


def test_average_clips():
  clips = np.array([[[3.0, 0.0], [0.0, 0.5]], [[1.0, 1.0], [2.0, 2.0]]])
  np.testing.assert_allclose(zero_shot.average_clips(clips),
                             [[np.sqrt(0.5), np.sqrt(0.5)], [np.sqrt(0.5), np.sqrt(0.5)]], rtol=1e-6)


def test_evaluate_logits_top1_top5_confusion():
  weights = np.eye(6, dtype=np.float32)  # class c points along axis c
  feats = np.array([[5.0, 0, 0, 0, 0, 0],          # -> class 0, label 0
                    [0, 0.1, 2.0, 0, 0, 0],         # -> class 2, label 1 (rank 2)
                    [1, 2, 3, 4, 5, 6]], np.float32)  # label 0 has rank 6 (excluded from top-5)
  out = zero_shot.evaluate(feats, [0, 1, 0], weights)
  np.testing.assert_allclose(zero_shot.logits(feats, weights)[0], [1, 0, 0, 0, 0, 0], atol=1e-6)
  assert out['top1'] == pytest.approx(1 / 3)
  assert out['top5'] == pytest.approx(2 / 3)
  np.testing.assert_array_equal(out['predictions'], [0, 2, 5])
  assert out['confusion'][0, 0] == 1 and out['confusion'][1, 2] == 1 and out['confusion'][0, 5] == 1
  assert out['confusion'].sum() == 3


def test_templates_per_modality_and_prompts():
  for modality in ('image', 'video', 'audio'):
    ts = templates.get_templates(modality)
    assert len(ts) == 16 and len(set(ts)) == 16
    assert all(t.count('{}') == 1 for t in ts)
  assert templates.get_templates('video', 'audio') == templates.AUDIO
  assert templates.get_templates('image', ['a {} here.']) == ('a {} here.',)
  with pytest.raises(ValueError, match='exactly one'):
    templates.get_templates('image', ['no placeholder'])
  with pytest.raises(ValueError, match='unknown template set'):
    templates.get_templates('image', 'smell')
  prompts = templates.build_prompts(['seven', 'one'], ['a {}.', 'the {}!'])
  assert prompts == [['a seven.', 'the seven!'], ['a one.', 'the one!']]


def test_eval_templates_differ_from_training_captions():
  norm = lambda t: t.format('seven').rstrip('.').strip().lower()
  training = {norm(t) for t in digits_render.TEMPLATES}
  assert 'a handwritten seven' in training
  for ts in templates.TEMPLATES.values():
    assert not training & {norm(t) for t in ts}


def test_retrieval_deduplicates_captions_only_when_asked():
  caps = ['a seven', 'a one ', ['a seven', 'a 7'], 'a one']
  every, pos = retrieval.caption_positives(caps)   # the default: every caption a candidate
  assert every == ['a seven', 'a one', 'a seven', 'a 7', 'a one']
  np.testing.assert_array_equal(pos, [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 1, 0],
                                      [0, 0, 0, 0, 1]])
  texts, pos = retrieval.caption_positives(caps, dedup=True)
  assert texts == ['a seven', 'a one', 'a 7']
  np.testing.assert_array_equal(pos, [[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 0]])
  ids, pos_ids = retrieval.caption_positives([np.array([3, 4]), np.array([3, 4]), np.array([5, 0])],
                                             dedup=True)
  assert ids == [(3, 4), (5, 0)]
  np.testing.assert_array_equal(pos_ids, [[1, 0], [1, 0], [0, 1]])


def test_retrieval_both_directions():
  items = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
  texts = np.array([[1.0, 0.0], [0.0, 1.0]])
  pos = np.array([[1, 0], [0, 1], [1, 0]], bool)  # item 2 is captioned like item 0
  out = retrieval.evaluate(items, texts, pos, 'image', ties='pessimistic')
  # image->text: items 0,1 rank 1; item 2 scores 0.6 (pos) vs 0.8 (neg) -> rank 2.
  assert out['image_to_text']['R@1'] == pytest.approx(2 / 3)
  assert out['image_to_text']['mean_rank'] == pytest.approx(4 / 3)
  # text->image: text 0 best positive is item 0 (1.0) -> 1; text 1 best is item 1 (1.0) -> 1.
  assert out['text_to_image']['R@1'] == pytest.approx(1.0)
  assert set(out) == {'image_to_text', 'text_to_image'}
