"""Generator `app_paths`: sessions are walks through the app's links, users alone equal
users made together, and the walks follow the configured transition probabilities."""

import numpy as np
import pytest
from scipy import stats

from fl_analytics.data import app_paths as ap
from fl_analytics.data import features
from fl_analytics.data import synthetic

KNOBS = dict(seed=3, num_days=60, quantity_skew=1.0, label_skew=1.0, feature_skew=1.0)
ENTRIES = (ap.APP_OPEN, ap.NOTIFICATION_OPEN)


def _sessions(batch):
  """Every session of a batch: (user k, its actions), split at its entries."""
  out = []
  for k in range(len(batch)):
    events = batch.log(k).events
    starts = np.flatnonzero(np.isin(events, ENTRIES))
    out += [(k, events[a:b]) for a, b in zip(starts, list(starts[1:]) + [len(events)])]
  return out


def test_a_user_alone_equals_the_user_made_with_others(monkeypatch):
  together = ap.generate_users(np.arange(40, 90), **KNOBS)
  monkeypatch.setattr(synthetic, 'CHUNK_USERS', 7)  # other batches, other chunks
  for k, u in enumerate([40, 41, 63, 89]):
    alone = ap.generate_users([u], **KNOBS)
    again = together.log(u - 40)
    np.testing.assert_array_equal(alone.timestamps, again.timestamps)
    np.testing.assert_array_equal(alone.events, again.events)
    assert alone.archetypes[0] == again.archetype
  chunked = ap.generate_users(np.arange(40, 90), **KNOBS)
  np.testing.assert_array_equal(chunked.events, together.events)
  np.testing.assert_array_equal(chunked.timestamps, together.timestamps)


def test_sessions_are_walks_from_an_entry_to_session_end_split_like_the_features():
  batch = ap.generate_users(np.arange(200), **KNOBS)
  sessions = _sessions(batch)
  assert len(sessions) > 1000
  for _, actions in sessions:
    assert actions[0] in ENTRIES and actions[-1] == ap.END
    assert ap.END not in actions[:-1] and not np.isin(actions[1:], ENTRIES).any()
  # The featurization's session split (a gap of more than 30 minutes) finds the same.
  for k in range(20):
    log = batch.log(k)
    gap_starts = 1 + np.sum(np.diff(log.timestamps) > features.SESSION_GAP_SECONDS)
    assert gap_starts == np.isin(log.events, ENTRIES).sum() or len(log.events) == 0
    assert np.all(np.diff(log.timestamps) >= 0)


def test_a_purchase_comes_through_the_checkout_funnel():
  index = {a: i for i, a in enumerate(ap.VOCABULARY)}
  funnel = [index[a] for a in ('checkout_start', 'shipping_info', 'payment_info')]
  purchases = 0
  for _, actions in _sessions(ap.generate_users(np.arange(300), **KNOBS)):
    for t in np.flatnonzero(actions == index['purchase']):
      purchases += 1
      before = list(actions[:t])
      assert before[-1] == funnel[2] and all(step in before for step in funnel)
  assert purchases > 20


def _expected_row(i: int, archetype: int) -> np.ndarray:
  """The configured next-action probabilities from action i, written out again from
  the links (`_LINKS`, home back, error link, exits) for a user of `archetype` at
  feature_skew=0 (the population's section affinities, no personal tilt), every
  section adopted, no frustration spread (label_skew=0) and unit volume."""
  name = ap.VOCABULARY[i]
  links = dict(ap._LINKS[name])  # pylint: disable=protected-access
  if name not in ('app_open', 'notification_open'):
    if name != 'home_view':
      links['home_view'] = links.get('home_view', 0) + 0.5
    links['error_screen'] = links.get('error_screen', 0) + 0.04
  affinity = dict(zip(ap.SECTION_NAMES, ap._GLOBAL_AFFINITY))  # pylint: disable=protected-access
  section = {a: s for s, actions in ap._SECTIONS for a in actions}  # pylint: disable=protected-access
  row = np.zeros(len(ap.VOCABULARY))
  for target, weight in links.items():
    row[ap.VOCABULARY.index(target)] += weight * affinity[section[target]]
  exit_weight = ap._EXIT.get(name, 0.4)  # pylint: disable=protected-access
  row[ap.END] += exit_weight * ap.ARCHETYPES[archetype].exit_factor
  return row / row.sum()


def test_the_walks_follow_the_configured_transition_probabilities():
  knobs = dict(KNOBS, quantity_skew=0.0, label_skew=0.0, feature_skew=0.0, num_days=90)
  users = np.arange(3000)
  batch = ap.generate_users(users, **knobs)
  traits = ap.user_traits(users, **knobs)
  last_adoption = traits.adopted_day.max(axis=1)
  names = [a.name for a in ap.ARCHETYPES]
  v = len(ap.VOCABULARY)
  counts = np.zeros((len(names), v, v))
  for k in range(len(batch)):
    log = batch.log(k)
    day = (log.timestamps - synthetic.ORIGIN_TIMESTAMP) // synthetic.SECONDS_PER_DAY
    # after every section is adopted; pairs within a session (no pair out of END),
    # but for the END that ends a walk at its longest (_MAX_STEPS, forced)
    starts = np.flatnonzero(np.isin(log.events, ENTRIES))
    forced = starts[1:][np.diff(starts) == ap._MAX_STEPS + 2] - 2  # pylint: disable=protected-access
    ok = (day[:-1] > last_adoption[k]) & (log.events[:-1] != ap.END)
    ok[forced] = False
    if len(starts) and len(log.events) - starts[-1] == ap._MAX_STEPS + 2:  # pylint: disable=protected-access
      ok[-1] = False
    np.add.at(counts[names.index(log.archetype)],
              (log.events[:-1][ok], log.events[1:][ok]), 1)
  chi2, dof, tested = 0.0, 0, 0
  for a in range(len(names)):
    for i in range(v):
      n = counts[a, i].sum()
      if i == ap.END or n < 200:
        continue
      expected = _expected_row(i, a) * n
      observed = counts[a, i]
      assert observed[expected == 0].sum() == 0, (names[a], ap.VOCABULARY[i])
      # Cells expected at least 5 times, and the rest pooled (the chi-square
      # approximation's condition).
      big = expected >= 5
      e = np.append(expected[big], expected[~big].sum())
      o = np.append(observed[big], observed[~big].sum())
      if e[-1] < 5:
        e, o = e[:-1], o[:-1]
      chi2 += np.sum((o - e)**2 / e)
      dof += len(e) - 1
      tested += 1
  assert tested > 100
  assert stats.chi2.sf(chi2, dof) > 1e-3, (chi2, dof)


def _split_half_correlation(feature_skew: float) -> float:
  """Across social users, the correlation between the share of their home_view ->
  feed_scroll steps in the first and in the second half of their log: the steps that
  do not end the session, once every section is adopted (adoption and the exit
  propensity differ per user whatever feature_skew is)."""
  knobs = dict(KNOBS, feature_skew=feature_skew, num_days=90)
  users = np.arange(6000)
  batch = ap.generate_users(users, **knobs)
  last_adoption = ap.user_traits(users, **knobs).adopted_day.max(axis=1)
  home, feed = ap.VOCABULARY.index('home_view'), ap.VOCABULARY.index('feed_scroll')
  halves = []
  for k in range(len(batch)):
    log = batch.log(k)
    day = (log.timestamps - synthetic.ORIGIN_TIMESTAMP) // synthetic.SECONDS_PER_DAY
    steps = np.flatnonzero((log.events[:-1] == home) & (log.events[1:] != ap.END)
                           & (day[:-1] > last_adoption[k]))
    if log.archetype != 'social' or len(steps) < 40:
      continue
    first, second = np.array_split(steps, 2)
    halves.append([np.mean(log.events[first + 1] == feed),
                   np.mean(log.events[second + 1] == feed)])
  halves = np.array(halves)
  assert len(halves) > 50
  return float(np.corrcoef(halves.T)[0, 1])


def test_users_keep_their_own_transition_tendencies():
  # With feature_skew, a user's choices at home_view in one half of its log predict
  # the other half's; without, users of an archetype are alike.
  assert _split_half_correlation(1.0) > 0.5
  assert abs(_split_half_correlation(0.0)) < 0.25


def test_weekends_and_evenings_are_busier():
  batch = ap.generate_users(np.arange(3000), **KNOBS)
  starts = batch.timestamps[np.isin(batch.events, ENTRIES)]
  hour = (starts % synthetic.SECONDS_PER_DAY) // 3600
  weekday = ((starts - synthetic.ORIGIN_TIMESTAMP) // synthetic.SECONDS_PER_DAY) % 7
  by_hour = np.bincount(hour, minlength=24)
  assert by_hour[19:22].mean() > 3 * by_hour[2:5].mean()
  by_day = np.bincount(weekday, minlength=7)
  assert by_day[5:].mean() > 1.05 * by_day[:5].mean()


@pytest.mark.parametrize('knob', ['quantity_skew', 'label_skew', 'feature_skew'])
def test_same_seed_same_logs_other_seed_other_logs(knob):
  a = ap.generate_users(np.arange(30), **dict(KNOBS, **{knob: 0.5}))
  b = ap.generate_users(np.arange(30), **dict(KNOBS, **{knob: 0.5}))
  c = ap.generate_users(np.arange(30), **dict(KNOBS, **{knob: 0.5, 'seed': 4}))
  np.testing.assert_array_equal(a.events, b.events)
  assert len(a.events) != len(c.events) or not np.array_equal(a.events, c.events)
