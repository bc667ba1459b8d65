"""What each analytics query computes on the device, and what one user can move."""

import numpy as np
import pytest

from fl_analytics.analytics import heavy_hitters as hh
from fl_analytics.analytics import queries
from fl_analytics.analytics import trees
from fl_analytics.data import app_paths
from fl_analytics.data import synthetic

DAY = synthetic.SECONDS_PER_DAY
T0 = synthetic.ORIGIN_TIMESTAMP
POP = queries.Population(app_paths.VOCABULARY, T0, 60, seed=3)
A = {a: i for i, a in enumerate(app_paths.VOCABULARY)}


def _population(n=120):
  return app_paths.generate_users(np.arange(n), seed=5, num_days=60, quantity_skew=1.0,
                                  label_skew=1.0, feature_skew=1.0)


def _extreme_user():
  """A user who does everything, often: every 3 hours of 60 days a session of every
  action, 5 s apart (8 sessions a day of 5 minutes), in order rotated by the session's
  number (so its paths differ), so every bound binds."""
  k = len(app_paths.VOCABULARY)
  starts = T0 + np.arange(60 * 8) * 3 * 3600
  times = (starts[:, None] + np.arange(k)[None, :] * 5).ravel()
  actions = ((np.arange(len(starts))[:, None] + np.arange(k)[None, :]) % k).ravel()
  return synthetic.UserLog('extreme', times.astype(np.int64), actions.astype(np.int32))


def _with(batch, log):
  return synthetic.LogBatch.of([batch.log(k) for k in range(len(batch))] + [log])


@pytest.mark.parametrize('name', sorted(queries.REGISTRY))
def test_one_user_moves_the_true_answer_by_at_most_the_stated_bound(name):
  q = queries.REGISTRY[name]
  s = queries.settings_of(q, {})
  batch = _with(_population(), _extreme_user())
  sums = q.contributions(batch, POP, s).sum(axis=0, dtype=np.float64)
  rng = np.random.default_rng(0)
  for u in [len(batch) - 1, *rng.choice(len(batch) - 1, 12, replace=False)]:
    without = synthetic.LogBatch.of([batch.log(k) for k in range(len(batch)) if k != u])
    moved = sums - q.contributions(without, POP, s).sum(axis=0, dtype=np.float64)
    assert np.linalg.norm(moved) <= q.sensitivity(s) + 1e-6, (name, u)
  extreme = q.contributions(synthetic.LogBatch.of([_extreme_user()]), POP, s)[0]
  assert np.linalg.norm(extreme) == pytest.approx(q.sensitivity(s))  # the bound binds


def test_heavy_hitters_keep_at_most_the_bound_of_distinct_paths_per_user():
  s = dict(hh.DEFAULTS, max_strings=2)
  batch = _with(_population(60), _extreme_user())
  users, codes = hh.path_codes(batch, POP, s)
  pairs = set(zip(users.tolist(), codes.tolist()))
  assert len(pairs) == len(users)  # each path once per user
  per_user = np.bincount(users, minlength=len(batch))
  assert per_user.max() == 2 and per_user[-1] == 2
  # Adding or removing a user moves the counts by at most sqrt(L) in L2.
  truth = hh.true_counts(codes, POP, s)
  without = hh.true_counts(codes[users != len(batch) - 1], POP, s)
  moved = [truth[x] - without.get(x, 0) for x in truth]
  assert np.linalg.norm(moved) <= np.sqrt(2) + 1e-9


def _log(events, minutes):
  return synthetic.UserLog('u', (T0 + np.asarray(minutes) * 60).astype(np.int64),
                           np.asarray([A[e] for e in events], np.int32))


def test_funnel_steps_count_in_order_within_one_session_only():
  s = {'steps': ('item_view', 'add_to_cart', 'purchase')}
  logs = [
      _log(['app_open', 'item_view', 'add_to_cart', 'purchase'], [0, 1, 2, 3]),
      _log(['app_open', 'add_to_cart', 'item_view'], [0, 1, 2]),  # out of order
      _log(['item_view', 'add_to_cart', 'purchase'], [0, 1, 100]),  # purchase: later
      _log(['home_view'], [0]),
  ]
  got = queries.REGISTRY['funnel'].contributions(synthetic.LogBatch.of(logs), POP, s)
  assert got.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]]


def test_retention_marks_the_signup_cohort_and_the_days_active_after_it():
  s = {'days': (1, 7), 'cohort_days': 7}
  logs = [_log(['app_open', 'app_open', 'app_open'], [9 * 1440, 10 * 1440, 20 * 1440])]
  v = queries.REGISTRY['retention'].contributions(synthetic.LogBatch.of(logs), POP, s)[0]
  cohort = 9 // 7  # signed up on day 9: the second week
  assert np.flatnonzero(v).tolist() == [cohort * 3, cohort * 3 + 1]  # day 10, not 16
  assert (1, 7) in queries.retention_cells(POP, s)
  assert all(c * 7 + 6 + n < 60 for c, n in queries.retention_cells(POP, s))


def test_feature_usage_keeps_the_most_used_features_of_the_window():
  s = {'window_days': 7, 'max_features': 2}
  end = 60 * 1440
  logs = [_log(['play', 'play', 'play', 'item_like', 'item_like', 'item_share', 'search_open'],
               [end - 1, end - 2, end - 3, end - 4, end - 5, end - 6, end - 8 * 1440])]
  v = queries.REGISTRY['feature_usage'].contributions(synthetic.LogBatch.of(logs), POP,
                                                      s)[0]
  assert sorted(np.flatnonzero(v).tolist()) == sorted([A['play'], A['item_like']])


def test_histogram_tree_is_tffs_layout_and_records_are_bounded_on_the_device():
  s = queries.settings_of(queries.REGISTRY['session_length'], {'num_bins': 5,
                                                               'max_records': 2})
  layers = trees.tree_layers(np.arange(5.0), 2)
  assert [len(x) for x in layers] == [1, 2, 4, 8]  # padded to 8 leaves
  assert layers[0][0] == 10 and layers[1].tolist() == [6, 4]
  logs = [_log(['app_open', 'home_view'] * 3, [0, 1, 100, 105, 200, 203])]
  v = queries.REGISTRY['session_length'].contributions(synthetic.LogBatch.of(logs), POP,
                                                       s)[0]
  assert v[0] == 2  # two of the three sessions, sampled on the device


@pytest.mark.parametrize('overrides, message', [
    ({'nope': 1}, 'unknown setting'),
    ({'steps': ('item_view', 'teleport')}, "'teleport'"),
    ({'steps': ()}, 'steps must be actions'),
])
def test_bad_settings_are_refused_naming_the_key(overrides, message):
  with pytest.raises(ValueError, match=message):
    q = queries.REGISTRY['funnel']
    queries.check_settings(q, queries.settings_of(q, overrides), POP)
