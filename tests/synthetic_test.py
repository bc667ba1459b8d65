"""The synthetic population: seeded, and each non-IID knob does what it says."""

import numpy as np
import pytest

from fl_analytics.data import features
from fl_analytics.data import synthetic


def _population(**kw):
  args = dict(num_users=300, seed=3, num_days=60, quantity_skew=1.0,
              label_skew=1.0, feature_skew=1.0)
  args.update(kw)
  return synthetic.generate_population(**args)


def _churn_rate_by_archetype(logs, num_days=60):
  labels = {}
  for log in logs:
    _, y = features.churn_examples(
        log.timestamps, log.events, origin_timestamp=synthetic.ORIGIN_TIMESTAMP,
        num_days=num_days, window_days=14, horizon_days=7, stride_days=2,
        num_kinds=len(synthetic.EVENT_VOCAB))
    labels.setdefault(log.archetype, []).append(y)
  return np.array([np.concatenate(v).mean() for v in labels.values()])


def test_same_seed_gives_identical_logs():
  a, b = _population(num_users=20), _population(num_users=20)
  for x, y in zip(a, b):
    assert x.user_id == y.user_id and x.archetype == y.archetype
    np.testing.assert_array_equal(x.timestamps, y.timestamps)
    np.testing.assert_array_equal(x.events, y.events)


def test_other_seed_gives_other_logs():
  a, b = _population(num_users=20), _population(num_users=20, seed=4)
  assert any(len(x.events) != len(y.events) for x, y in zip(a, b))


def test_user_log_does_not_depend_on_population_size():
  small, large = _population(num_users=5), _population(num_users=50)
  for x, y in zip(small, large):
    np.testing.assert_array_equal(x.timestamps, y.timestamps)


def test_logs_are_sorted_and_inside_the_collection_period():
  for log in _population(num_users=50):
    assert np.all(np.diff(log.timestamps) >= 0)
    if len(log.timestamps):
      assert log.timestamps[0] >= synthetic.ORIGIN_TIMESTAMP
      assert log.timestamps[-1] < synthetic.ORIGIN_TIMESTAMP + 61 * 86400
    assert np.all((log.events >= 0) & (log.events < len(synthetic.EVENT_VOCAB)))


def test_archetype_shares_follow_weights():
  logs = _population(num_users=2000)
  share = np.mean([log.archetype == 'casual' for log in logs])
  assert abs(share - 0.4) < 0.04


def test_quantity_skew_spreads_data_volume():
  def cv(logs):
    n = np.array([len(log.events) for log in logs if log.archetype == 'power'], float)
    return n.std() / n.mean()

  assert cv(_population(quantity_skew=1.5)) > 2 * cv(_population(quantity_skew=0.0))


def test_label_skew_spreads_churn_rates_between_user_groups():
  flat = _churn_rate_by_archetype(_population(num_users=800, label_skew=0.0))
  skewed = _churn_rate_by_archetype(_population(num_users=800, label_skew=1.0))
  assert flat.max() - flat.min() < 0.1
  assert skewed.max() - skewed.min() > 0.3


def test_feature_skew_spreads_event_mix_between_users():
  def spread(logs):
    mixes = []
    for log in logs:
      later = log.events[log.events != 0]  # app_open starts every session
      if len(later) >= 50:
        mixes.append(np.bincount(later, minlength=len(synthetic.EVENT_VOCAB))
                     / len(later))
    mixes = np.array(mixes)
    return np.abs(mixes - mixes.mean(axis=0)).sum(axis=1).mean()

  assert spread(_population(feature_skew=1.0)) > 3 * spread(
      _population(feature_skew=0.0))


@pytest.mark.parametrize('kw, message', [
    (dict(num_users=0), 'num_users must be a positive integer'),
    (dict(quantity_skew=-1.0), 'quantity_skew must be a finite number >= 0'),
    (dict(label_skew=1.5), r'label_skew must be in \[0, 1\]'),
    (dict(feature_skew=-0.1), r'feature_skew must be in \[0, 1\]'),
])
def test_invalid_knobs_raise_naming_the_value(kw, message):
  with pytest.raises(ValueError, match=message):
    _population(**kw)


def test_sessions_derived_from_gaps_match_generated_sessions():
  # Every generated session starts with app_open; the 30-minute gap rule used on
  # device (and for real logs) must recover exactly those sessions.
  for log in _population(num_users=40, quantity_skew=2.0):
    if len(log.timestamps) == 0:
      continue
    starts = 1 + np.sum(np.diff(log.timestamps) > features.SESSION_GAP_SECONDS)
    assert starts == np.sum(log.events == 0)


def test_users_generated_together_equal_users_generated_alone(monkeypatch):
  knobs = dict(seed=7, num_days=60, quantity_skew=1.5, label_skew=1.0, feature_skew=1.0)
  monkeypatch.setattr(synthetic, 'CHUNK_USERS', 16)  # several chunks
  users = [40, 3, 999_999, 12, 3] + list(range(100, 130))
  batch = synthetic.generate_users(users, **knobs)
  assert len(batch) == len(users) and batch.offsets[-1] == len(batch.timestamps)
  for k, u in enumerate(users):
    alone = synthetic.generate_user(u, **knobs)
    got = batch.log(k)
    assert got.user_id == alone.user_id == f'user_{u:06d}'
    assert got.archetype == alone.archetype
    np.testing.assert_array_equal(got.timestamps, alone.timestamps)
    np.testing.assert_array_equal(got.events, alone.events)


def test_session_lengths_and_event_mix_follow_their_parameters():
  # Without quantity skew, a session has 1 + Poisson(events_per_session) events; with
  # feature_skew 0 the event mix is the population's (concentration 500).
  logs = _population(num_users=400, quantity_skew=0.0, feature_skew=0.0)
  for arch in synthetic.ARCHETYPES:
    sizes = []
    for log in logs:
      if log.archetype == arch.name:
        starts = np.flatnonzero(log.events == 0)
        sizes += list(np.diff(np.append(starts, len(log.events))) - 1)
    lam, n = arch.events_per_session, len(sizes)  # within 4 standard errors
    assert abs(np.mean(sizes) - lam) < 4 * np.sqrt(lam / n)
    assert abs(np.var(sizes) - lam) < 4 * np.sqrt((lam + 2 * lam**2) / n)
  later = np.concatenate([log.events[log.events != 0] for log in logs])
  share = np.bincount(later, minlength=len(synthetic.EVENT_VOCAB))[1:] / len(later)
  np.testing.assert_allclose(share, synthetic._GLOBAL_MIX, atol=0.01)
