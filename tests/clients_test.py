"""The split into training users and held-out users."""

import ml_collections
import numpy as np
import pytest

from fl_analytics.data import clients
from fl_analytics.data import synthetic


def _data_config(**kw):
  c = ml_collections.ConfigDict(dict(
      num_users=200, eval_fraction=0.25, num_days=45, window_days=14,
      horizon_days=7, stride_days=2, quantity_skew=1.0, label_skew=1.0,
      feature_skew=1.0, source='synthetic', unknown_events='drop',
      min_time='1970-01-01T00:00:00Z', max_time='2100-01-01T00:00:00Z'))
  c.update(kw)
  return c


def test_users_are_split_not_examples():
  data = clients.build_churn_data(_data_config(), seed=0)
  assert data.num_eval_users == 50
  assert data.population_size + data.num_users_without_examples == 150
  assert len(set(data.train_user_ids)) == data.population_size
  # Held-out examples are exactly the examples of the 50 held-out users.
  logs = synthetic.generate_population(num_users=200, seed=0, num_days=45)
  train = set(data.train_user_ids)
  held_out_total = 0
  for log in logs:
    if log.user_id not in train:
      from fl_analytics.data import features
      _, y = features.churn_examples(
          log.timestamps, log.events, origin_timestamp=synthetic.ORIGIN_TIMESTAMP,
          num_days=45, window_days=14, horizon_days=7, stride_days=2)
      held_out_total += len(y)
  assert held_out_total == len(data.eval_y)


def test_every_training_user_has_examples_with_labels_as_columns():
  data = clients.build_churn_data(_data_config(), seed=0)
  for x, y in data.train_examples:
    assert len(x) == len(y) > 0 and y.shape[1] == 1
  assert 0.05 < data.eval_base_rate < 0.6


def test_same_seed_same_split():
  a = clients.build_churn_data(_data_config(), seed=5)
  b = clients.build_churn_data(_data_config(), seed=5)
  assert a.train_user_ids == b.train_user_ids
  np.testing.assert_array_equal(a.eval_x, b.eval_x)


def test_num_days_too_short_for_window_and_horizon_is_refused():
  with pytest.raises(ValueError, match='leaves no observation day'):
    clients.build_churn_data(_data_config(num_days=10), seed=0)
