"""On-device featurization of one user's log into churn examples."""

import numpy as np
import pytest

from fl_analytics.data import features
from fl_analytics.data import synthetic

DAY = 86400
T0 = synthetic.ORIGIN_TIMESTAMP
V = len(synthetic.EVENT_VOCAB)
COL = {name: i for i, name in enumerate(features.feature_names(synthetic.EVENT_VOCAB))}


def _examples(ts, ev, **kw):
  args = dict(origin_timestamp=T0, num_days=30, window_days=4, horizon_days=3,
              stride_days=1, num_kinds=V)
  args.update(kw)
  return features.churn_examples(np.array(ts, np.int64), np.array(ev, np.int32), **args)


def test_user_active_on_days_0_to_9_churns_from_day_7():
  # One session (app_open + play) at noon on days 0..9, nothing afterwards.
  ts, ev = [], []
  for d in range(10):
    ts += [T0 + d * DAY + 43200, T0 + d * DAY + 43260]
    ev += [0, 1]
  x, y = _examples(ts, ev)
  # Observation days 3..26; observed only while active in the 4-day window: 3..12.
  assert len(y) == 10
  # Label: no event in days d+1..d+3. Days 3..8 see activity ahead; 9..12 do not.
  np.testing.assert_array_equal(y, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
  # Day 3: window days 0..3, 4 sessions, 4 app_open and 4 play events.
  np.testing.assert_allclose(x[0, COL['log_count_app_open']], np.log1p(4))
  np.testing.assert_allclose(x[0, COL['log_count_play']], np.log1p(4))
  np.testing.assert_allclose(x[0, COL['log_sessions']], np.log1p(4))
  assert x[0, COL['active_day_share']] == 1.0
  assert x[0, COL['recency']] == 0.0
  # Day 12: window 9..12, last active day 9.
  np.testing.assert_allclose(x[-1, COL['recency']], 3 / 4)
  np.testing.assert_allclose(x[-1, COL['active_day_share']], 1 / 4)


def test_sessions_are_split_by_gaps_longer_than_30_minutes():
  ts = [T0 + 3 * DAY + s for s in (0, 60, 60 + 1801, 60 + 1801 + 30)]
  x, _ = _examples(ts, [0, 1, 0, 2])
  np.testing.assert_allclose(x[0, COL['log_sessions']], np.log1p(2))


def test_events_outside_the_collection_period_are_ignored():
  x1, y1 = _examples([T0 + 5 * DAY], [1])
  x2, y2 = _examples([T0 - 2 * DAY, T0 + 5 * DAY, T0 + 40 * DAY], [1, 1, 1])
  np.testing.assert_array_equal(x1, x2)
  np.testing.assert_array_equal(y1, y2)


def test_empty_log_gives_no_examples():
  x, y = _examples([], [])
  assert x.shape == (0, features.num_features(synthetic.EVENT_VOCAB)) and y.shape == (0,)


def test_features_are_finite_for_a_synthetic_population():
  for log in synthetic.generate_population(num_users=40, seed=1, num_days=40):
    x, y = features.churn_examples(
        log.timestamps, log.events, origin_timestamp=T0, num_days=40,
        window_days=14, horizon_days=7, stride_days=1, num_kinds=V)
    assert np.isfinite(x).all()
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_many_users_at_once_equal_each_user_alone():
  logs = synthetic.generate_population(num_users=30, seed=2, num_days=40)
  # An empty user, and one whose events fall before day 0 and after the last day.
  logs.insert(3, synthetic.UserLog('empty', np.zeros(0, np.int64), np.zeros(0, np.int32)))
  logs.insert(7, synthetic.UserLog('outside', np.array([T0 - 5, T0 + 40 * 86400 + 9]),
                                   np.array([0, 1], np.int32)))
  batch = synthetic.LogBatch.of(logs)
  kw = dict(origin_timestamp=T0, num_days=40, window_days=14, horizon_days=7,
            stride_days=2, num_kinds=V)
  together = features.churn_examples_many(batch.timestamps, batch.events, batch.offsets,
                                          **kw)
  assert len(together) == len(logs)
  for log, (x, y) in zip(logs, together):
    ax, ay = features.churn_examples(log.timestamps, log.events, **kw)
    np.testing.assert_array_equal(x, ax)
    np.testing.assert_array_equal(y, ay)
  assert len(together[3][1]) == 0 and len(together[7][1]) == 0
  assert sum(len(y) for _, y in together) > 100


def test_window_shorter_than_two_days_is_refused():
  with pytest.raises(ValueError, match='window_days must be at least 2'):
    _examples([T0], [0], window_days=1)


def test_next_action_examples_predict_within_sessions_from_padded_contexts():
  pad = V
  # Session 1: app_open, play, search, share; session 2 (2 h later): app_open, like.
  ts = [T0 + 100, T0 + 130, T0 + 160, T0 + 190, T0 + 7300, T0 + 7330]
  ev = [0, 1, 2, 3, 0, 4]
  x, y = features.next_action_examples(np.array(ts), np.array(ev), origin_timestamp=T0,
                                       num_days=30, context=3, max_examples=10,
                                       pad_action=pad)
  assert y.tolist() == [1, 2, 3, 4]  # session starts are context, never targets
  assert x.tolist() == [[pad, pad, 0], [pad, 0, 1], [0, 1, 2], [pad, pad, 0]]
  assert x.dtype == np.int32 and y.dtype == np.int32
  # The most recent max_examples only; events outside data collection are ignored.
  x2, y2 = features.next_action_examples(np.array(ts), np.array(ev), origin_timestamp=T0,
                                         num_days=30, context=3, max_examples=2,
                                         pad_action=pad)
  assert y2.tolist() == [3, 4] and x2.tolist() == x[2:].tolist()
  late = features.next_action_examples(np.array(ts) + 40 * DAY, np.array(ev),
                                       origin_timestamp=T0, num_days=30, context=3,
                                       max_examples=10, pad_action=pad)
  assert late[0].shape == (0, 3) and late[1].shape == (0,)


def test_extras_funnel_completion_recency_of_key_actions_and_tenure():
  # Vocabulary indices: 0 app_open, 2 search, 9 purchase (archetypes' vocabulary as
  # numbers). The funnel search -> purchase, key actions purchase and share (3).
  extras = features.ChurnExtras(funnels=((2, 9),), key_actions=(9, 3), tenure=True)
  names = features.feature_names(synthetic.EVENT_VOCAB, extras)
  assert names[-4:] == ('search_to_purchase', 'days_since_purchase', 'days_since_share',
                        'log_tenure_days')
  # Day 2: app_open; day 5: two searches and a purchase; day 6: app_open.
  ts = [T0 + 2 * DAY, T0 + 5 * DAY, T0 + 5 * DAY + 10, T0 + 5 * DAY + 20, T0 + 6 * DAY]
  x, _ = _examples(ts, [0, 2, 2, 9, 0], extras=extras)
  plain, _ = _examples(ts, [0, 2, 2, 9, 0])
  assert x.shape == (len(plain), len(names))
  np.testing.assert_array_equal(x[:, :plain.shape[1]], plain)  # the extras come after
  # Observation days 3..9 (active in the 4-day window); row k is day 3 + k.
  funnel, since_purchase, since_share, tenure = x[:, -4:].T
  np.testing.assert_allclose(funnel, [0, 0, 0.5, 0.5, 0.5, 0.5, 0])  # 1 of 2 searches
  np.testing.assert_allclose(since_purchase, [1, 1, 0, 1 / 4, 2 / 4, 3 / 4, 1])
  np.testing.assert_allclose(since_share, 1.0)  # never
  np.testing.assert_allclose(tenure, np.log1p(np.arange(3, 10) - 2))
