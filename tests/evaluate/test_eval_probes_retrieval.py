"""Few-shot ridge probes against numpy's closed form, the L2-validated linear probe, every-caption
retrieval checked by hand, mean per-class recall, and the prompt-embedding cache."""

import numpy as np
import pytest

from mmjax.evaluate import captions, few_shot, linear_probe, metrics, retrieval, text_cache


def _numpy_ridge(x, y, classes, l2):
  """The textbook solution on standardised features + a bias column:
  solve (X^T X + l2 I) W = X^T Y."""
  x = np.asarray(x, np.float64)
  mean, std = x.mean(axis=0), x.std(axis=0) + 1e-5
  xb = np.concatenate([(x - mean) / std, np.full((len(x), 1), few_shot.BIAS)], axis=1)
  targets = np.where(np.arange(classes)[None, :] == np.asarray(y)[:, None], 1.0, -1.0)
  w = np.linalg.solve(xb.T @ xb + l2 * np.eye(xb.shape[1]), xb.T @ targets)
  return w, mean, std


@pytest.mark.parametrize('rows', [40, 6])   # more rows than columns, and fewer
def test_ridge_matches_numpy_closed_form(rows):
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(rows, 9)) * rng.uniform(0.5, 3, size=9), rng.integers(3, size=rows)
  solver = few_shot.RidgeSolver(x, y, 3)
  for l2 in (2.0 ** -4, 1.0, 2.0 ** 6):
    w, mean, std = _numpy_ridge(x, y, 3, l2)
    np.testing.assert_allclose(solver.weights(l2), w, rtol=1e-6, atol=1e-8)
    test = rng.normal(size=(20, 9))
    xb = np.concatenate([(test - mean) / std, np.full((20, 1), few_shot.BIAS)], axis=1)
    np.testing.assert_array_equal(solver.predict(test, l2), np.argmax(xb @ w, axis=1))


def test_few_shot_is_big_vision_fewshot_lsr():
  rng = np.random.default_rng(1)
  centers = 3.0 * rng.normal(size=(4, 16))
  train_y = np.repeat(np.arange(4), 40)
  train_x = centers[train_y] + rng.normal(size=(160, 16))
  test_y = np.repeat(np.arange(4), 25)
  test_x = centers[test_y] + rng.normal(size=(100, 16))
  out = few_shot.few_shot(train_x, train_y, test_x, test_y, 4)
  assert set(out) == {'1shot', '5shot', '10shot', '25shot'}
  for k in (1, 5, 10, 25):
    r = out[f'{k}shot']
    assert r['l2'] == 1024.0 and r['seeds'] == [0, 1, 2] and r['examples'] == [4 * k] * 3
    assert len(r['per_seed']) == 3 and r['top1'] == pytest.approx(np.mean(r['per_seed']))
    # Redo each seed by hand: default_rng(seed) permutes each class's rows, k-shot takes the
    # first k of each (so shots are nested), numpy's solve at L2 = 2^10.
    for seed in range(3):
      perm = np.random.default_rng(seed)
      rows = np.concatenate([perm.permutation(np.where(train_y == c)[0])[:k] for c in range(4)])
      w, mean, std = _numpy_ridge(train_x[rows], train_y[rows], 4, 1024.0)
      xb = np.concatenate([(test_x - mean) / std, np.full((100, 1), few_shot.BIAS)], axis=1)
      assert r['per_seed'][seed] == pytest.approx(np.mean(np.argmax(xb @ w, axis=1) == test_y))
  assert out['25shot']['top1'] > 0.9
  assert few_shot.few_shot(train_x, train_y, test_x, test_y, 4, shots=(5,), l2=2.0)['5shot'][
      'l2'] == 2.0


def test_few_shot_takes_what_a_short_class_has():
  x, y = np.eye(6), np.array([0, 0, 1, 1, 1, 2])
  out = few_shot.few_shot(x, y, x, y, 3, shots=(1, 2, 5))
  assert [out[k]['examples'][0] for k in ('1shot', '2shot', '5shot')] == [3, 5, 6]


def _sklearn_probe(x, y, test_x, l2):
  """The same objective by an independent route: sklearn's Newton-CG solver, tightly converged."""
  from sklearn.linear_model import LogisticRegression
  mean, std = x.mean(0), x.std(0) + 1e-6
  model = LogisticRegression(C=1 / (l2 * len(y)), solver='newton-cg', tol=1e-10, max_iter=10000)
  model.fit((x - mean) / std, y)
  return model.predict((test_x - mean) / std), model


def test_linear_probe_reaches_the_optimum_and_chooses_l2_on_validation():
  rng = np.random.default_rng(2)
  centers = 1.5 * rng.normal(size=(3, 8))
  y = rng.integers(3, size=150)
  x = (centers[y] + rng.normal(size=(150, 8))).astype(np.float32)
  one = linear_probe.train_linear_probe(x[:100], y[:100], x[100:], y[100:], 3, l2=1e-3)
  preds, model = _sklearn_probe(x[:100].astype(np.float64), y[:100], x[100:], 1e-3)
  assert one['converged'] and one['top1'] == pytest.approx(np.mean(preds == y[100:]))
  assert one['loss'] == pytest.approx(
      -np.mean(model.predict_log_proba(((x[:100] - x[:100].mean(0)) / (x[:100].std(0) + 1e-6))
                                        )[np.arange(100), y[:100]])
      + 0.5e-3 * np.sum(model.coef_ ** 2), rel=1e-5)
  out = linear_probe.linear_probe(x[:100], y[:100], x[100:], y[100:], 3)
  fit, val = linear_probe.split_validation(100)
  assert len(val) == 20 and not set(fit) & set(val) and len(fit) + len(val) == 100
  assert out['l2'] in linear_probe.L2_GRID and f'{out["l2"]:.4g}' in out['val_top1']
  assert out['val_top1'][f'{out["l2"]:.4g}'] == max(out['val_top1'].values())
  # Refit on train + validation at the chosen L2, scored on test.
  preds, _ = _sklearn_probe(x[:100].astype(np.float64), y[:100], x[100:], out['l2'])
  assert out['top1'] == pytest.approx(np.mean(preds == y[100:]))


def test_peak_search_is_coarse_then_halving():
  calls = []
  score = lambda i: (calls.append(i), -abs(i - 37))[1]
  assert linear_probe.peak_search(score, 97) == 37
  assert len(calls) == len(set(calls)) and len(calls) < 25   # 13 coarse + at most 2 per halving


def test_mean_per_class_recall_by_hand():
  # class 0: 3 of 4 right, class 1: 0 of 1, class 2: 1 of 1 -> (0.75 + 0 + 1) / 3; class 3 absent.
  preds, labels = [0, 0, 0, 2, 0, 2], [0, 0, 0, 0, 1, 2]
  assert metrics.mean_per_class_recall(preds, labels, 4) == pytest.approx(1.75 / 3)


class _CharTokenizer:
  """Token ids = character codes (lowercased), so distinct strings stay distinct."""
  lowercase = True

  def describe(self):
    return {'kind': 'chars'}

  def encode(self, texts, length):
    ids = np.zeros((len(texts), length), np.int32)
    for i, t in enumerate(texts):
      codes = [ord(c) for c in t.lower()][:length]
      ids[i, :len(codes)] = codes
    return ids, (ids > 0).astype(np.int32)


def test_retrieval_with_every_caption_by_hand():
  # Two images with 5 captions each; 'a dog' is a caption of both (one distinct text).
  caps = [['a cat', 'a kitten', 'a pet', 'a dog', 'fur'],
          ['a car', 'a truck', 'a road', 'a dog', 'wheels']]
  every, _, every_pos = captions.tokenized_pool(caps, _CharTokenizer(), 12)
  assert every.shape == (10, 12) and every_pos.sum(axis=0).tolist() == [1] * 10
  ids, mask, pos = captions.tokenized_pool(caps, _CharTokenizer(), 12, dedup=True)
  assert ids.shape == (9, 12) and pos.shape == (2, 9)
  assert pos.sum(axis=1).tolist() == [5, 5] and pos[:, 3].tolist() == [True, True]
  # Embeddings chosen so the scores are known: texts along axes, images as weighted sums.
  text = np.eye(9, dtype=np.float32)
  # image 0 scores: its best caption 'a pet' (0.9) beats every negative -> rank 1.
  # image 1 scores: negatives 'a cat' 0.8, 'a kitten' 0.7 beat its best caption 'a road' 0.6 -> 3.
  img = np.zeros((2, 9), np.float32)
  img[0, [0, 1, 2, 4, 5]] = [0.1, 0.2, 0.9, 0.3, 0.5]   # columns: cat kitten pet fur car ...
  img[1, [0, 1, 7, 6]] = [0.8, 0.7, 0.6, 0.1]           # ... truck(6) road(7) wheels(8)
  out = retrieval.evaluate(img, text, pos, 'image', ties='pessimistic')
  i2t = out['image_to_text']
  assert (i2t['R@1'], i2t['R@5'], i2t['R@10']) == (0.5, 1.0, 1.0)
  # text -> image: each of the 9 texts ranks the 2 images. Correct at rank 1 unless the other
  # image scores higher: 'fur'(4) scores 0.3 vs 0 (rank 1); 'a car'(5) belongs to image 1 but
  # scores 0.5 on image 0 vs 0 (rank 2); 'a truck'(6) 0 vs 0.1 (rank 1); 'wheels'(8) 0 vs 0: a tie,
  # counted against (rank 2). 'a dog' is right for both (rank 1). cat, kitten: rank 2 (image 1
  # scores 0.8/0.7 for image 0's captions). pet: 1. road: 1. -> rank 1 for 5 of 9.
  t2i = out['text_to_image']
  assert t2i['R@1'] == pytest.approx(5 / 9) and t2i['R@5'] == 1.0


class _CountingEmbedder:
  def __init__(self):
    self.rows = 0

  def embed_text(self, ids, mask, batch_size):
    self.rows += len(ids)
    rng = np.random.default_rng(int(ids.sum()) % 1000)
    return rng.normal(size=(len(ids), 4)).astype(np.float32)


def test_text_cache_embeds_each_prompt_set_once_per_checkpoint(tmp_path):
  emb = _CountingEmbedder()
  cache = text_cache.TextCache(emb, _CharTokenizer(), 'ckpt-a', str(tmp_path))
  w1 = cache.classifier(['cat', 'dog'], ['a {}.', 'the {}.'], 8)
  w2 = cache.classifier(['cat', 'dog'], ['a {}.', 'the {}.'], 8)
  assert emb.rows == 4 and (cache.hits, cache.misses) == (1, 1)
  np.testing.assert_array_equal(w1, w2)
  # A new process for the same checkpoint reads the file; another checkpoint embeds again.
  again = text_cache.TextCache(emb, _CharTokenizer(), 'ckpt-a', str(tmp_path))
  np.testing.assert_array_equal(again.classifier(['cat', 'dog'], ['a {}.', 'the {}.'], 8), w1)
  assert emb.rows == 4
  other = text_cache.TextCache(emb, _CharTokenizer(), 'ckpt-b', str(tmp_path))
  other.classifier(['cat', 'dog'], ['a {}.', 'the {}.'], 8)
  other.classifier(['cat', 'dog'], ['a {}.'], 8)
  assert emb.rows == 4 + 4 + 2


def _topk_recall(scores, positives, k):
  """CLIP_benchmark's rule, by a stable top-k: right when a positive is among the first k."""
  top = np.argsort(-scores, axis=1, kind='stable')[:, :k]
  return np.mean(np.take_along_axis(positives, top, axis=1).any(axis=1))


def test_every_caption_rule_matches_a_top_k_with_duplicate_captions():
  # 30 items, 2 captions each drawn from 8 texts: many exact duplicates, hence exact score ties.
  rng = np.random.default_rng(3)
  words = [f'text {i}' for i in range(8)]
  caps = [[words[rng.integers(8)], words[rng.integers(8)]] for _ in range(30)]
  ids, mask, pos = captions.tokenized_pool(caps, _CharTokenizer(), 12)
  vocab = {w: rng.normal(size=6) for w in words}
  text = np.stack([vocab[c] for item in caps for c in item]).astype(np.float32)
  img = rng.normal(size=(30, 6)).astype(np.float32)
  out = retrieval.evaluate(img, text, pos, 'image')
  scores = img @ text.T
  for k in (1, 5, 10):
    assert out['image_to_text'][f'R@{k}'] == pytest.approx(_topk_recall(scores, pos, k))
    assert out['text_to_image'][f'R@{k}'] == pytest.approx(_topk_recall(scores.T, pos.T, k))
  # The de-duplicated pool: one column per distinct text, correct for every item carrying it.
  text_item = np.repeat(np.arange(30), 2)
  rows, distinct = captions.distinct(ids, mask, text_item, 30)
  assert len(rows) == len({c for item in caps for c in item}) == distinct.shape[1]
  for i, item in enumerate(caps):
    assert {caps[r // 2][r % 2] for r in rows[distinct[i]]} == set(item)
