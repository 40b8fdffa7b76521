"""Ranks, top-k accuracy, confusion matrix and retrieval against hand-computed cases (ties too)."""

import numpy as np
import pytest

from mmjax.evaluate import metrics


def test_label_ranks_without_ties():
  logits = [[0.1, 0.9, 0.3],   # label 1 -> highest -> rank 1
            [0.5, 0.2, 0.4],   # label 2 -> second -> rank 2
            [0.7, 0.8, 0.1]]   # label 2 -> last -> rank 3
  np.testing.assert_array_equal(metrics.label_ranks(logits, [1, 2, 2]), [1, 2, 3])


def test_ties_count_against_the_label():
  # Constant logits: every class ties, so the label ranks last (pessimistic), never 1.
  np.testing.assert_array_equal(metrics.label_ranks(np.zeros((2, 4)), [0, 3]), [4, 4])
  # Label 0 ties with class 2 (both 0.5), class 1 is strictly higher: 1 + 2 others >= -> rank 3.
  np.testing.assert_array_equal(metrics.label_ranks([[0.5, 0.9, 0.5, 0.1]], [0]), [3])


def test_topk_accuracy_hand_computed_with_ties():
  logits = np.array([[0.1, 0.9, 0.3, 0.0],   # label 1: rank 1
                     [0.5, 0.5, 0.4, 0.0],   # label 0 tied with 1: rank 2
                     [0.2, 0.2, 0.2, 0.2],   # label 3 all tied: rank 4
                     [0.3, 0.1, 0.9, 0.8]])  # label 1: rank 4
  labels = [1, 0, 3, 1]
  assert metrics.topk_accuracy(logits, labels, 1) == pytest.approx(0.25)
  assert metrics.topk_accuracy(logits, labels, 2) == pytest.approx(0.5)
  assert metrics.topk_accuracy(logits, labels, 3) == pytest.approx(0.5)
  assert metrics.topk_accuracy(logits, labels, 4) == pytest.approx(1.0)
  assert metrics.topk_accuracy(logits, labels, 5) == pytest.approx(1.0)


def test_nan_scores_rank_last():
  logits = [[np.nan, 0.1, 0.2], [0.3, np.nan, 0.1]]
  np.testing.assert_array_equal(metrics.label_ranks(logits, [0, 0]), [3, 1])


def test_topk_bad_input():
  with pytest.raises(ValueError, match='labels must lie'):
    metrics.topk_accuracy([[0.1, 0.2]], [2], 1)
  with pytest.raises(ValueError, match='k must be'):
    metrics.topk_accuracy([[0.1, 0.2]], [0], 0)
  with pytest.raises(ValueError, match='empty'):
    metrics.topk_accuracy(np.zeros((0, 3)), [], 1)


def test_predictions_and_confusion():
  logits = [[0.2, 0.2, 0.1], [0.0, 0.1, 0.9], [0.3, 0.8, 0.1], [0.9, 0.1, 0.0]]
  preds = metrics.predictions(logits)
  np.testing.assert_array_equal(preds, [0, 2, 1, 0])  # tie -> lowest index
  cm = metrics.confusion_matrix(preds, [0, 2, 2, 1], 3)
  expected = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1]])
  np.testing.assert_array_equal(cm, expected)
  assert cm.sum() == 4


def test_retrieval_ranks_hand_computed():
  scores = np.array([[0.9, 0.1, 0.5, 0.2],
                     [0.3, 0.4, 0.8, 0.7],
                     [0.6, 0.6, 0.1, 0.0]])
  positives = np.eye(3, 4, dtype=bool)
  # q0: 0.9 is best -> 1. q1: 0.4 beaten by 0.8, 0.7 -> 3. q2: 0.1 beaten by 0.6, 0.6 -> 3.
  np.testing.assert_array_equal(metrics.retrieval_ranks(scores, positives), [1, 3, 3])
  summary = metrics.retrieval_metrics(scores, positives)
  assert summary['R@1'] == pytest.approx(1 / 3)
  assert summary['R@5'] == pytest.approx(1.0)
  assert summary['R@10'] == pytest.approx(1.0)
  assert summary['median_rank'] == pytest.approx(3.0)
  assert summary['mean_rank'] == pytest.approx(7 / 3)


def test_retrieval_ties_and_several_positives():
  scores = np.array([[0.5, 0.5, 0.2, 0.9],
                     [0.1, 0.7, 0.7, 0.7]])
  # q0 positives {0, 1} tie with each other: other positives never push it down; 0.9 does -> 2.
  # q1 positive {1} ties with negatives 2 and 3 -> pessimistic rank 3.
  positives = np.array([[1, 1, 0, 0], [0, 1, 0, 0]], bool)
  np.testing.assert_array_equal(metrics.retrieval_ranks(scores, positives), [2, 3])
  # q0 with positives {2, 3}: best positive is 0.9 -> rank 1 whatever the others score.
  np.testing.assert_array_equal(
      metrics.retrieval_ranks(scores[:1], np.array([[0, 0, 1, 1]], bool)), [1])


def test_positives_from_groups_and_missing_positive():
  mask = metrics.positives_from_groups([0, 1, 0], [1, 0])
  np.testing.assert_array_equal(mask, [[0, 1], [1, 0], [0, 1]])
  with pytest.raises(ValueError, match='query 1 has no correct candidate'):
    metrics.retrieval_ranks(np.zeros((2, 2)), np.array([[1, 0], [0, 0]], bool))


def test_rank_summary_percentiles():
  ranks = [1, 2, 5, 6, 10, 11]
  s = metrics.rank_summary(ranks)
  assert s == {'R@1': pytest.approx(1 / 6), 'R@5': pytest.approx(3 / 6),
               'R@10': pytest.approx(5 / 6), 'median_rank': 5.5, 'mean_rank': pytest.approx(35 / 6)}
