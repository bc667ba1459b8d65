"""A seeded synthetic population of app users with device-local event logs.

Each user (one federated client) gets an event log of `(timestamp, event)` pairs over
`num_days` days. Users are drawn from four archetypes that differ in how often they are
active, how long their sessions are, whether their activity fades, how likely they are
to quit for good, and which app features they use:

=========  ===========================================================
power      active most days, several long sessions, rarely quits
casual     active a few days a week, short sessions
declining  starts engaged, activity decays day by day, quits often
dormant    rarely active, quits often
=========  ===========================================================

The population is non-IID on purpose, with three knobs (all in `data` of the config):

* ``quantity_skew`` (>= 0): sigma of a per-user log-normal volume multiplier (mean 1)
  on the number of sessions per active day and of events per session. 0: every user of
  an archetype has the same expected amount of data; larger: some users have far more.
  It leaves the days a user is active, and so the churn labels, alone.
* ``label_skew`` (in [0, 1]): how far each user's churn dynamics (activity level, decay,
  quit hazard) follow its archetype rather than the population average. 0: every user
  churns at the same expected rate; 1: churn rates differ by archetype.
* ``feature_skew`` (in [0, 1]): how far each user's mix of events follows its archetype
  and how much it varies between users (a Dirichlet around the archetype's mix).
  0: every user uses features in the same proportions; 1: strongly user-specific.

Each user's log is generated from its own random stream, seeded by `(seed, user index)`,
so a user's log does not depend on the population size.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

SECONDS_PER_DAY = 86_400
# 2024-01-01T00:00:00Z: the first day of every synthetic log.
ORIGIN_TIMESTAMP = 1_704_067_200

EVENT_VOCAB: tuple[str, ...] = (
    'app_open',
    'play',
    'search',
    'share',
    'like',
    'comment',
    'settings',
    'notification_open',
    'upgrade_page',
    'purchase',
)
# Every session starts with `app_open`; the other events follow the user's mix.
_SESSION_START = 0
# Sessions start in the first 20 minutes of distinct even hours (06:00-22:00) and last at
# most 25 minutes, so two sessions are always more than the 30-minute session gap apart.
_SESSION_HOURS = np.arange(6, 24, 2)
_MAX_SESSION_SECONDS = 1500


@dataclasses.dataclass(frozen=True)
class Archetype:
  name: str
  weight: float  # share of the population
  active_prob: float  # probability of being active on a day (before decay)
  sessions_mean: float  # mean sessions on an active day
  events_per_session: float  # mean events per session (after app_open)
  daily_decay: float  # exponential decay of active_prob per day
  quit_hazard: float  # daily probability of quitting for good
  # Relative preference over EVENT_VOCAB[1:].
  event_pref: tuple[float, ...]


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype('power', 0.2, 0.85, 3.0, 8.0, 0.0, 0.002,
              (6, 3, 2, 4, 2, 0.5, 2, 1, 1)),
    Archetype('casual', 0.4, 0.40, 1.5, 4.0, 0.0, 0.006,
              (5, 2, 1, 2, 0.5, 0.5, 2, 0.5, 0.2)),
    Archetype('declining', 0.25, 0.70, 2.0, 5.0, 0.03, 0.015,
              (4, 3, 0.5, 1, 0.5, 2, 3, 1.5, 0.1)),
    Archetype('dormant', 0.15, 0.12, 1.0, 2.5, 0.01, 0.02,
              (3, 1, 0.2, 0.5, 0.2, 1, 4, 0.2, 0.05)),
)


@dataclasses.dataclass(frozen=True)
class UserLog:
  """One user's device-local event log, sorted by time."""

  user_id: str
  timestamps: np.ndarray  # int64 seconds since the Unix epoch
  events: np.ndarray  # int32 indices into EVENT_VOCAB
  archetype: str = ''


def check_knobs(*, num_users, num_days, quantity_skew, label_skew, feature_skew):
  if not isinstance(num_users, (int, np.integer)) or num_users < 1:
    raise ValueError(f'data.num_users must be a positive integer. Found {num_users!r}.')
  if not isinstance(num_days, (int, np.integer)) or num_days < 1:
    raise ValueError(f'data.num_days must be a positive integer. Found {num_days!r}.')
  if quantity_skew < 0:
    raise ValueError(f'data.quantity_skew must be >= 0. Found {quantity_skew}.')
  for name, value in (('label_skew', label_skew), ('feature_skew', feature_skew)):
    if not 0.0 <= value <= 1.0:
      raise ValueError(f'data.{name} must be in [0, 1]. Found {value}.')


def _normalized(x: Sequence[float]) -> np.ndarray:
  x = np.asarray(x, dtype=np.float64)
  return x / x.sum()


_WEIGHTS = _normalized([a.weight for a in ARCHETYPES])
# The population average of each archetype field, and of the event mixes.
_MEANS = {name: float(sum(w * getattr(a, name) for w, a in zip(_WEIGHTS, ARCHETYPES)))
          for name in ('active_prob', 'daily_decay', 'quit_hazard')}  # what label_skew mixes
_GLOBAL_MIX = _normalized(
    sum(w * _normalized(a.event_pref) for w, a in zip(_WEIGHTS, ARCHETYPES)))


def generate_user(
    index: int,
    *,
    seed: int,
    num_days: int,
    quantity_skew: float,
    label_skew: float,
    feature_skew: float,
) -> UserLog:
  """Generates the log of user `index` from its own seeded random stream.

  Vectorized over the user's days, sessions and events (a few hundred microseconds per
  user here), so that users can be made when they are sampled
  (`fl_analytics.data.population`) rather than all before training.
  """
  rng = np.random.default_rng([seed, index])
  arch = ARCHETYPES[rng.choice(len(ARCHETYPES), p=_WEIGHTS)]

  def skewed(field):  # label_skew interpolates population mean -> archetype
    return label_skew * getattr(arch, field) + (1 - label_skew) * _MEANS[field]

  volume = rng.lognormal(-0.5 * quantity_skew**2, quantity_skew)
  active_prob = skewed('active_prob')
  sessions_mean = max(1.0, arch.sessions_mean * volume)
  events_per_session = arch.events_per_session * volume
  daily_decay = skewed('daily_decay')
  quit_hazard = skewed('quit_hazard')

  mean_mix = (1 - feature_skew) * _GLOBAL_MIX + feature_skew * _normalized(
      arch.event_pref)
  concentration = 500.0 * (1 - feature_skew) + 5.0 * feature_skew
  mix = rng.dirichlet(mean_mix * concentration + 1e-6)

  quit_day = rng.geometric(quit_hazard) if quit_hazard > 0 else num_days + 1
  days = np.arange(min(num_days, quit_day))
  days = days[rng.random(len(days)) < active_prob * np.exp(-daily_decay * days)]
  hours = len(_SESSION_HOURS)
  n_sessions = np.minimum(hours, 1 + rng.poisson(sessions_mean - 1.0, size=len(days)))
  # Each active day's sessions start in distinct hours, a uniformly random subset:
  # the hours whose random key ranks below the day's number of sessions.
  ranks = rng.random((len(days), hours)).argsort(axis=1).argsort(axis=1)
  day_of, hour_of = np.nonzero(ranks < n_sessions[:, None])  # sessions in time order
  starts = (ORIGIN_TIMESTAMP + days[day_of] * SECONDS_PER_DAY
            + _SESSION_HOURS[hour_of] * 3600 + rng.integers(0, 1200, size=len(day_of)))
  n_events = rng.poisson(events_per_session, size=len(starts))
  # Each session's event offsets: cumulative gaps of 5-89 s, squeezed into
  # _MAX_SESSION_SECONDS when longer.
  gaps = rng.integers(5, 90, size=int(n_events.sum()))
  totals = np.concatenate([[0], np.cumsum(gaps)])
  first = np.cumsum(n_events) - n_events
  before = np.repeat(totals[first], n_events)
  offsets = totals[1:] - before
  length = np.repeat(totals[first + n_events] - totals[first], n_events)
  offsets = np.where(length > _MAX_SESSION_SECONDS,
                     offsets * _MAX_SESSION_SECONDS // np.maximum(length, 1), offsets)
  # Every session: its app_open at the start, then its events.
  is_start = np.zeros(len(starts) + len(gaps), bool)
  is_start[first + np.arange(len(starts))] = True
  ts = np.empty(len(is_start), np.int64)
  ts[is_start] = starts
  ts[~is_start] = np.repeat(starts, n_events) + offsets
  ev = np.full(len(is_start), _SESSION_START, np.int32)
  ev[~is_start] = 1 + rng.choice(len(mix), size=len(gaps), p=mix)
  return UserLog(f'user_{index:06d}', ts, ev, arch.name)


def generate_population(
    *,
    num_users: int,
    seed: int,
    num_days: int = 90,
    quantity_skew: float = 1.0,
    label_skew: float = 1.0,
    feature_skew: float = 1.0,
) -> list[UserLog]:
  """Generates `num_users` user logs; same arguments, same logs."""
  check_knobs(
      num_users=num_users,
      num_days=num_days,
      quantity_skew=quantity_skew,
      label_skew=label_skew,
      feature_skew=feature_skew,
  )
  return [
      generate_user(
          i,
          seed=seed,
          num_days=num_days,
          quantity_skew=quantity_skew,
          label_skew=label_skew,
          feature_skew=feature_skew,
      )
      for i in range(num_users)
  ]
