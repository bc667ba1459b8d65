"""The population: a function of the user index, split into training and held-out users."""

import dataclasses

import ml_collections
import numpy as np
import pytest

from fl_analytics import tasks
from fl_analytics.data import clients
from fl_analytics.data import counter_random
from fl_analytics.data import features
from fl_analytics.data import generators
from fl_analytics.data import synthetic


def _data_config(**kw):
  c = ml_collections.ConfigDict(dict(
      num_users=200, eval_fraction=0.25, num_days=45, window_days=14,
      horizon_days=7, stride_days=2, quantity_skew=1.0, label_skew=1.0,
      feature_skew=1.0, source='synthetic', unknown_events='drop',
      min_time='1970-01-01T00:00:00Z', max_time='2100-01-01T00:00:00Z'))
  c.update(kw)
  return c


def _churn(log):
  x, y = features.churn_examples(
      log.timestamps, log.events, origin_timestamp=synthetic.ORIGIN_TIMESTAMP,
      num_days=45, window_days=14, horizon_days=7, stride_days=2,
      num_kinds=len(synthetic.EVENT_VOCAB))
  return x, y[:, None]


def test_users_are_split_not_examples():
  data = tasks.get('churn').population(_data_config(), seed=0)
  assert data.num_eval_users == 50
  # Every enrolled training user is in the population, with or without examples.
  assert data.population_size == 150
  assert not set(data.train_users) & set(data.eval_users)
  assert sorted([*data.train_users, *data.eval_users]) == list(range(200))
  # Held-out examples are exactly the examples of the 50 held-out users.
  logs = synthetic.generate_population(num_users=200, seed=0, num_days=45)
  held_out_total = sum(len(_churn(logs[u])[1]) for u in data.eval_users)
  assert held_out_total == len(data.held_out().y)


def test_lazy_users_equal_eagerly_built_ones():
  data = tasks.get('churn').population(_data_config(), seed=4)
  logs = synthetic.generate_population(num_users=200, seed=4, num_days=45)
  for i in (0, 7, 149):  # a training user: its examples, shuffled once on the device
    x, y = data.train_examples(i)
    u = int(data.train_users[i])
    ex, ey = _churn(logs[u])
    perm = counter_random.shuffles(4, [u], [len(ey)])
    np.testing.assert_array_equal(x, ex[perm])
    np.testing.assert_array_equal(y, ey[perm])
  held_out = data.held_out()
  eager = [(log.user_id, *_churn(log)) for log in (logs[u] for u in data.eval_users)]
  eager = [e for e in eager if len(e[2])]
  assert held_out.user_ids == tuple(e[0] for e in eager)
  np.testing.assert_array_equal(held_out.x, np.concatenate([e[1] for e in eager]))
  np.testing.assert_array_equal(held_out.y, np.concatenate([e[2] for e in eager]))


def test_a_cohort_made_together_equals_its_users_made_one_by_one():
  together = tasks.get('churn').population(_data_config(), seed=2)
  alone = tasks.get('churn').population(_data_config(), seed=2)
  cohort = [149, 3, 77, 3, 0]
  made = together.train_examples_many(cohort)
  assert together.users_made == 4  # user 3 made once
  for i, (x, y) in zip(cohort, made):
    ax, ay = alone.train_examples(i)
    np.testing.assert_array_equal(x, ax)
    np.testing.assert_array_equal(y, ay)
  # A shuffle on the device: the same examples, not in the order of the log.
  x, y = together.train_examples(149)
  ex, _ = _churn(synthetic.generate_user(int(together.train_users[149]), seed=2,
                                         num_days=45, quantity_skew=1.0, label_skew=1.0,
                                         feature_skew=1.0))
  assert len(ex) > 3 and not np.array_equal(x, ex)
  np.testing.assert_array_equal(np.sort(x, axis=0), np.sort(ex, axis=0))


def test_training_users_without_examples_stay_in_the_population_with_no_examples():
  # Users who quit before the first observation window have no churn example.
  data = tasks.get('churn').population(_data_config(num_users=400), seed=0)
  sizes = [len(data.train_examples(i)[1]) for i in range(data.population_size)]
  assert 0 in sizes and data.population_size == 300
  empty = sizes.index(0)
  x, y = data.train_examples(empty)
  assert x.shape == (0, features.num_features(synthetic.EVENT_VOCAB)) and y.shape == (0, 1)
  assert x.dtype == data.empty_x.dtype


def test_population_size_is_known_and_nobody_is_made_up_front(monkeypatch):
  made = []
  real = generators.REGISTRY['archetypes']
  monkeypatch.setitem(generators.REGISTRY, 'archetypes', dataclasses.replace(
      real, generate_users=lambda indices, **kw: made.extend(indices)
      or real.generate_users(indices, **kw)))
  data = tasks.get('churn').population(_data_config(num_users=100_000), seed=0)
  assert data.population_size == 75_000 and data.num_eval_users == 25_000
  assert made == [] and data.users_made == 0
  # Only the users asked for are made.
  data.train_examples(12_345)
  data.eval_sample(3, seed=0)
  assert len(made) == 4 and data.users_made == 4
  assert made[0] == data.train_users[12_345]


def test_the_cache_of_training_users_is_bounded():
  source = clients.load_source(_data_config(), seed=0)
  data = clients.FederatedData(source, tasks.get('churn').examples_fn(_data_config()), seed=0,
                               eval_fraction=0.25, cache_users=5)
  first = data.train_examples(0)
  for i in range(1, 20):
    data.train_examples(i)
  assert data.users_made == 20
  again = data.train_examples(0)  # evicted, made again: the same arrays
  assert data.users_made == 21
  np.testing.assert_array_equal(first[0], again[0])
  data.train_examples(0)
  assert data.users_made == 21


def test_same_seed_same_split():
  a = tasks.get('churn').population(_data_config(), seed=5)
  b = tasks.get('churn').population(_data_config(), seed=5)
  np.testing.assert_array_equal(a.train_users, b.train_users)
  np.testing.assert_array_equal(a.held_out().x, b.held_out().x)


def test_num_days_too_short_for_window_and_horizon_is_refused():
  with pytest.raises(ValueError, match='leaves no observation day'):
    tasks.get('churn').population(_data_config(num_days=10), seed=0)


def test_prefetched_users_equal_users_made_when_asked_for():
  asked = tasks.get('churn').population(_data_config(), seed=1)
  ahead = tasks.get('churn').population(_data_config(), seed=1)
  cohort = [5, 99, 0, 42, 7]
  ahead.prefetch(cohort + [5], threads=2)
  got = ahead.train_examples_many(cohort)
  assert ahead.users_made == 5  # each made once, by the prefetch threads
  for (x, y), (ax, ay) in zip(got, asked.train_examples_many(cohort)):
    np.testing.assert_array_equal(x, ax)
    np.testing.assert_array_equal(y, ay)


def test_a_failure_while_prefetching_is_raised_where_the_users_are_asked_for():
  source = clients.load_source(_data_config(), seed=0)

  def broken(us):
    raise OSError('store unreadable')

  data = clients.FederatedData(dataclasses.replace(source, logs=broken),
                               tasks.get('churn').examples_fn(_data_config()), seed=0,
                               eval_fraction=0.25)
  data.prefetch([1, 2])  # does not raise here
  with pytest.raises(OSError, match='store unreadable'):
    data.train_examples_many([1])
