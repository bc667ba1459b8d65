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


def _check_knobs(*, num_users, num_days, quantity_skew, label_skew, feature_skew):
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


def generate_user(
    index: int,
    *,
    seed: int,
    num_days: int,
    quantity_skew: float,
    label_skew: float,
    feature_skew: float,
) -> UserLog:
  """Generates the log of user `index` from its own seeded random stream."""
  rng = np.random.default_rng([seed, index])
  weights = _normalized([a.weight for a in ARCHETYPES])
  arch = ARCHETYPES[rng.choice(len(ARCHETYPES), p=weights)]

  def mean_of(field):
    return float(sum(w * getattr(a, field) for w, a in zip(weights, ARCHETYPES)))

  def skewed(field):  # label_skew interpolates population mean -> archetype
    return label_skew * getattr(arch, field) + (1 - label_skew) * mean_of(field)

  volume = rng.lognormal(-0.5 * quantity_skew**2, quantity_skew)
  active_prob = skewed('active_prob')
  sessions_mean = max(1.0, arch.sessions_mean * volume)
  events_per_session = arch.events_per_session * volume
  daily_decay = skewed('daily_decay')
  quit_hazard = skewed('quit_hazard')

  global_mix = _normalized(
      sum(w * _normalized(a.event_pref) for w, a in zip(weights, ARCHETYPES))
  )
  mean_mix = (1 - feature_skew) * global_mix + feature_skew * _normalized(
      arch.event_pref
  )
  concentration = 500.0 * (1 - feature_skew) + 5.0 * feature_skew
  mix = rng.dirichlet(mean_mix * concentration + 1e-6)

  quit_day = rng.geometric(quit_hazard) if quit_hazard > 0 else num_days + 1
  timestamps, events = [], []
  for day in range(min(num_days, quit_day)):
    if rng.random() >= active_prob * np.exp(-daily_decay * day):
      continue
    n_sessions = min(len(_SESSION_HOURS), 1 + rng.poisson(sessions_mean - 1.0))
    hours = np.sort(rng.choice(_SESSION_HOURS, size=n_sessions, replace=False))
    for hour in hours:
      t = (ORIGIN_TIMESTAMP + day * SECONDS_PER_DAY + hour * 3600
           + int(rng.integers(0, 1200)))
      n_events = rng.poisson(events_per_session)
      offsets = np.cumsum(rng.integers(5, 90, size=n_events))
      if n_events and offsets[-1] > _MAX_SESSION_SECONDS:
        offsets = offsets * _MAX_SESSION_SECONDS // offsets[-1]
      times = t + np.concatenate([[0], offsets])
      kinds = np.concatenate(
          [[_SESSION_START], 1 + rng.choice(len(mix), size=n_events, p=mix)]
      )
      timestamps.append(times)
      events.append(kinds)
  if timestamps:
    ts = np.concatenate(timestamps).astype(np.int64)
    ev = np.concatenate(events).astype(np.int32)
  else:
    ts, ev = np.zeros(0, np.int64), np.zeros(0, np.int32)
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
  _check_knobs(
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
