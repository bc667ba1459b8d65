"""Per-user metrics, calibration and personalization on known cases."""

import math

import numpy as np
import pytest
import tensorflow as tf

from fl_analytics.runs import evaluation
from fl_analytics import tasks
from fl_analytics.tasks import metrics


def test_per_user_rows_compare_each_user_with_the_constant_baseline():
  logit = math.log(0.25 / 0.75)  # predicts 0.25
  rows = evaluation.per_user_rows(
      [np.full(4, logit), np.array([5.0, -5.0])],
      [np.array([1.0, 0.0, 0.0, 0.0]), np.array([1.0, 0.0])],
      frequencies=np.array([0.5, 0.5]))
  assert rows[0]['loss'] == pytest.approx(-(math.log(0.25) + 3 * math.log(0.75)) / 4)
  assert rows[0]['baseline_loss'] == pytest.approx(math.log(2))
  assert rows[0]['accuracy'] == 0.75 and rows[0]['baseline_accuracy'] == 0.75
  assert rows[1]['accuracy'] == 1.0 and rows[1]['baseline_accuracy'] == 0.5
  summary = evaluation.summarize_users(rows)
  assert summary['users'] == 2
  assert summary['share_worse_than_baseline_loss'] == 0.0
  assert summary['loss_percentiles']['p50'] == pytest.approx(
      (rows[0]['loss'] + rows[1]['loss']) / 2)
  # A model that is confidently wrong for one user is worse than the baseline there.
  bad = evaluation.per_user_rows([np.array([5.0])], [np.array([0.0])],
                                 frequencies=np.array([0.5, 0.5]))
  assert evaluation.summarize_users(bad)['share_worse_than_baseline_loss'] == 1.0
  assert evaluation.summarize_users(bad)['share_worse_than_baseline_accuracy'] == 1.0
  with pytest.raises(ValueError, match='No held-out user has an example'):
    evaluation.summarize_users([])


def test_calibration_of_a_calibrated_and_an_overconfident_model():
  rng = np.random.default_rng(0)
  p = rng.uniform(0.01, 0.99, 200000)
  y = (rng.random(p.size) < p).astype(float)
  logits = np.log(p / (1 - p))
  bins, ece = evaluation.calibration_bins(logits, y)
  assert len(bins) == 10 and sum(b['count'] for b in bins) == p.size
  assert ece < 0.01
  for b in bins:
    assert b['bin_low'] <= b['mean_predicted'] <= b['bin_high']
    assert b['observed_rate'] == pytest.approx(b['mean_predicted'], abs=0.02)
  _, overconfident = evaluation.calibration_bins(3 * logits, y)
  assert overconfident > 0.05


def test_personalization_fine_tunes_towards_the_users_own_labels():
  # One feature; the global model says "churn" for x > 0, this user is the opposite.
  model = tf.keras.Sequential([tf.keras.Input(shape=(1,)), tf.keras.layers.Dense(1)])
  model.set_weights([np.array([[2.0]], np.float32), np.zeros(1, np.float32)])
  weights = model.get_weights()
  x = np.tile(np.array([[1.0], [-1.0]], np.float32), (10, 1))
  y = 1.0 - (x > 0).astype(np.float32)
  [(later_y, global_logits, mine)] = evaluation.personalize(
      tasks.get('churn'), model, weights, [(x, y)], steps=20, learning_rate=0.5, batch_size=4, seed=0)
  assert len(later_y) == 10
  loss = lambda z: float(np.mean(np.logaddexp(0, z.reshape(-1)) - z.reshape(-1) * later_y.reshape(-1)))
  assert loss(mine) < loss(global_logits) - 0.5
  np.testing.assert_array_equal(model.get_weights()[0], weights[0])  # restored
  # Too few examples to split: skipped.
  assert evaluation.personalize(tasks.get('churn'), model, weights, [(x[:3], y[:3])], steps=2,
                                learning_rate=0.1, batch_size=2, seed=0) == [None]


def test_multiclass_rows_use_the_label_frequencies_and_the_most_frequent_label():
  logits = np.log(np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]]))
  rows = evaluation.per_user_rows([logits], [np.array([0, 1])],
                                  frequencies=np.array([0.5, 0.25, 0.25]))
  assert rows[0]['loss'] == pytest.approx(-(math.log(0.7) + math.log(0.2)) / 2)
  assert rows[0]['baseline_loss'] == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2)
  assert rows[0]['accuracy'] == 0.5 and rows[0]['baseline_accuracy'] == 0.5
  assert evaluation.label_frequencies(np.array([2, 2, 0, 1]), 3).tolist() == [
      0.25, 0.25, 0.5]


def test_online_bigram_predicts_each_example_from_the_ones_before_it():
  prev, targets = np.array([0, 0, 0, 1, 1]), np.array([2, 2, 3, 2, 4])
  ranks = metrics.online_bigram_ranks(prev, targets, num_classes=5,
                                      fallback=np.array([0, 0, 0, 0, 0.5]), top_k=3)
  # 0: nothing before (the population's favourite, 4); 1, 2: 0 was followed by 2;
  # 3: 1 never seen, the user's most frequent (2); 4: 1 was followed by 2, then the
  # user's next most frequent (3), then the population's (4).
  np.testing.assert_array_equal(ranks[:, 0], [4, 2, 2, 2, 2])
  np.testing.assert_array_equal(ranks[4], [2, 3, 4])


def test_next_action_evaluation_reports_the_per_user_bigram():
  task = tasks.get('next_action')
  # A user who always goes 1 -> 2 and 2 -> 1: the bigram is right from its third
  # example on; the constant prediction (the most frequent, 1 or 2) half of the time.
  x = np.array([[5, 1], [5, 2], [5, 1], [5, 2], [5, 1], [5, 2]], np.int32)
  y = np.array([2, 1, 2, 1, 2, 1], np.int32)
  result = task.user_baselines([(x, y)], evaluation.label_frequencies(y, 5))
  bigram = result['per_user_bigram']
  assert bigram['examples'] == 6
  assert bigram['accuracy'] == pytest.approx(4 / 6)
  assert tasks.get('churn').user_baselines([(x, y)], np.ones(2)) == {}
