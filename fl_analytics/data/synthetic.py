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

Each user's draws are counter-based (`fl_analytics.data.counter_random`): draw k of
user u is a hash of `(seed, stream, u, k)`. So a user's log does not depend on the
population size or on which users are generated with it, and a cohort of users is
generated in one vectorized pass (`generate_users`). (Before 2026-11-29 each user had its
own numpy generator seeded by `(seed, u)`: the same model, other draws.)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import special

from fl_analytics.data import counter_random as cr

SECONDS_PER_DAY = 86_400
# The generator's version: part of a run's data fingerprint (`clients.LogSource`). A
# change that alters any user's log for the same settings and seed takes a new one.
GENERATOR_VERSION = 1
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
class BaseArchetype:
  """What every behaviour model's archetypes have (`archetype_fields` reads them)."""

  name: str
  weight: float  # share of the population
  active_prob: float  # probability of being active on a day (before decay)
  sessions_mean: float  # mean sessions on an active day


@dataclasses.dataclass(frozen=True)
class Archetype(BaseArchetype):
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
  if not (quantity_skew >= 0 and math.isfinite(quantity_skew)):  # NaN fails both
    raise ValueError(f'data.quantity_skew must be a finite number >= 0. Found '
                     f'{quantity_skew}.')
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


# The draws of user u are counter-based (`counter_random`): the same whichever users
# are generated with it.
_TWO32 = 2**32
# The streams of a user's draws, and the draws of the _USER stream.
_USER, _DAYS, _DAY_SESSIONS, _SESSIONS, _EVENTS = range(5)
_NUM_STREAMS = 5
_ARCHETYPE, _NORMAL_1, _NORMAL_2, _QUIT, _MIX = range(5)  # _MIX: one draw per kind
_NUM_HOURS = len(_SESSION_HOURS)


def _subsets_by_size() -> np.ndarray:
  """[n, r]: the r-th subset of n of the session hours, as a bit mask."""
  table = np.zeros((_NUM_HOURS + 1, math.comb(_NUM_HOURS, _NUM_HOURS // 2)), np.int64)
  for n in range(_NUM_HOURS + 1):
    masks = [m for m in range(2**_NUM_HOURS) if bin(m).count('1') == n]
    table[n, :len(masks)] = masks
  return table


_SUBSETS = _subsets_by_size()
_NUM_SUBSETS = np.array([math.comb(_NUM_HOURS, n) for n in range(_NUM_HOURS + 1)],
                        np.uint64)
# Event kinds: a user's 32-bit draw's top _BUCKET_BITS bits pick a bucket of its kind
# table; only buckets a CDF step falls in need a search.
_BUCKET_BITS = 8


def _count_at_most(table: np.ndarray, row_start: np.ndarray, rows: np.ndarray,
                   u32: np.ndarray) -> np.ndarray:
  """For each draw: how many entries of its row of a ragged table are <= its `u32`.

  `table`: int64, row r at `row_start[r]:row_start[r + 1]`, each row a non-decreasing
  quantized CDF in [0, 2**32] plus r * 2**33 (so the flat table is sorted). This is the
  inverse CDF of each row's distribution at the draw, in exact integer arithmetic, so
  a row's answers do not depend on the other rows."""
  return (np.searchsorted(table, rows * (2 * _TWO32) + u32.astype(np.int64), side='right')
          - row_start[rows])


def _quantized(cdf: np.ndarray) -> np.ndarray:
  return np.minimum(np.floor(cdf * _TWO32), _TWO32).astype(np.int64)


def _poisson_table(mean: np.ndarray, length: np.ndarray):
  """The ragged table (`_count_at_most`) of Poisson(mean[r]) at 0..length[r] - 1 (the
  mass above sits at length[r]); rows of similar length computed together, each on
  its own."""
  width = 2 ** np.ceil(np.log2(np.maximum(length, 1))).astype(np.int64)
  row_start = np.concatenate([[0], np.cumsum(width)])
  table = np.empty(row_start[-1], np.int64)
  for w in np.unique(width):
    rows = np.flatnonzero(width == w)
    k = np.arange(w, dtype=np.float64)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, w)))])
    m = mean[rows, None]
    pmf = np.exp(k * np.log(np.maximum(m, 1e-300)) - m - log_factorial)
    pmf[mean[rows] <= 0] = (k == 0)
    q = np.where(k < length[rows, None], _quantized(np.cumsum(pmf, axis=1)), _TWO32)
    table[row_start[rows, None] + np.arange(w)] = q + rows[:, None] * (2 * _TWO32)
  return table, row_start


def poisson_counts(mean: np.ndarray, cap: np.ndarray, rows: np.ndarray,
                   u32: np.ndarray) -> np.ndarray:
  """Poisson(mean[rows[i]]) draws at the 32-bit uniforms `u32`, by exact inversion,
  each row's capped at cap[row] (the mass above sits there)."""
  return _count_at_most(*_poisson_table(mean, cap), rows, u32)


@dataclasses.dataclass(frozen=True)
class LogBatch:
  """Users' logs in flat arrays: user k's events are `offsets[k]:offsets[k + 1]`."""

  user_ids: tuple[str, ...]
  timestamps: np.ndarray  # int64
  events: np.ndarray  # int32
  offsets: np.ndarray  # int64 [n + 1]
  archetypes: tuple[str, ...] = ()

  def __len__(self) -> int:
    return len(self.user_ids)

  def log(self, k: int) -> UserLog:
    a, b = self.offsets[k], self.offsets[k + 1]
    return UserLog(self.user_ids[k], self.timestamps[a:b], self.events[a:b],
                   self.archetypes[k] if self.archetypes else '')

  @classmethod
  def of(cls, logs: Sequence[UserLog]) -> 'LogBatch':
    sizes = [len(log.timestamps) for log in logs]
    return cls(tuple(log.user_id for log in logs),
               np.concatenate([np.asarray(log.timestamps, np.int64) for log in logs]
                              + [np.zeros(0, np.int64)]),
               np.concatenate([np.asarray(log.events, np.int32) for log in logs]
                              + [np.zeros(0, np.int32)]),
               np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]),
               tuple(log.archetype for log in logs))

  @classmethod
  def concat(cls, batches: Sequence['LogBatch']) -> 'LogBatch':
    starts = np.cumsum([0] + [b.offsets[-1] for b in batches[:-1]])
    return cls(sum((b.user_ids for b in batches), ()),
               np.concatenate([b.timestamps for b in batches]),
               np.concatenate([b.events for b in batches]),
               np.concatenate([[0]] + [b.offsets[1:] + s for b, s in zip(batches, starts)]),
               sum((b.archetypes for b in batches), ()))


# Users generated in one pass of `generate_users` (bounds its temporary memory; the
# logs do not depend on it).
CHUNK_USERS = 1024


def generate_users(
    indices: Sequence[int],
    *,
    seed: int,
    num_days: int,
    quantity_skew: float,
    label_skew: float,
    feature_skew: float,
) -> LogBatch:
  """The logs of users `indices`, generated together; user u's log is a function of
  (u, seed, the knobs) only, whichever users it is generated with.

  Each user: an archetype (by `ARCHETYPES` weights), a log-normal volume, a Dirichlet
  event mix, a geometric quit day; then, day by day until it quits, active with the
  archetype's (decaying) probability; on an active day 1 + Poisson sessions (at most
  one per session hour, the hours a uniformly random subset); each session an
  `app_open` at a uniformly random second of its hour's first 20 minutes, then a
  Poisson number of events 5-89 s apart (squeezed into `_MAX_SESSION_SECONDS`) drawn
  from the mix. The draws are counter-based (`counter_random`), vectorized over all
  the users' days, sessions and events (its cost per user: `make bench-scale`, `users`
  in `results/benchmark/scale.json`).
  """
  indices = np.asarray(indices, np.int64).reshape(-1)
  if len(indices) > CHUNK_USERS:
    parts = [generate_users(indices[k:k + CHUNK_USERS], seed=seed, num_days=num_days,
                            quantity_skew=quantity_skew, label_skew=label_skew,
                            feature_skew=feature_skew)
             for k in range(0, len(indices), CHUNK_USERS)]
    return LogBatch.concat(parts)
  keys = cr.stream_keys(seed, indices, _NUM_STREAMS)
  traits = _user_traits(keys, num_days=num_days, quantity_skew=quantity_skew,
                        label_skew=label_skew, feature_skew=feature_skew)
  session_user, starts, n_events = _sessions(keys, traits, num_days=num_days)
  ts, ev, per_user = _session_events(keys, traits.mix, session_user, starts, n_events)
  return LogBatch(tuple(f'user_{u:06d}' for u in indices.tolist()), ts, ev,
                  np.concatenate([[0], np.cumsum(per_user)]),
                  tuple(ARCHETYPES[a].name for a in traits.archetype.tolist()))


@dataclasses.dataclass(frozen=True)
class _Traits:
  """Per user of a batch: what its log is drawn from."""

  archetype: np.ndarray
  active_prob: np.ndarray
  daily_decay: np.ndarray
  sessions_mean: np.ndarray
  events_per_session: np.ndarray
  mix: np.ndarray  # [users, event kinds]: the user's event mix
  quit_day: np.ndarray


def archetype_fields(user_keys, draw: int, archetypes, weights, means, label_skew):
  """Each user's archetype (by `weights`, from draw `draw` of its `user_keys` stream),
  and two lookups of an archetype field by name: `field(name)`, the user's
  archetype's, and `skewed(name)`, that mixed with the population's `means[name]` by
  `label_skew`. Returns (archetype indices, field, skewed)."""
  u = cr.uniform(cr.bits(user_keys, np.full(len(user_keys), draw)))
  arch = np.minimum(np.searchsorted(np.cumsum(weights), u, side='right'),
                    len(archetypes) - 1)
  field = lambda name: np.array([getattr(a, name) for a in archetypes])[arch]
  skewed = lambda name: label_skew * field(name) + (1 - label_skew) * means[name]
  return arch, field, skewed


def _user_traits(keys, *, num_days, quantity_skew, label_skew, feature_skew) -> _Traits:
  """Per user: archetype, volume, churn dynamics, event mix, quit day."""
  n = len(keys)
  user_draw = lambda draw: cr.bits(keys[:, _USER], np.full(n, draw))
  arch, field, skewed = archetype_fields(keys[:, _USER], _ARCHETYPE, ARCHETYPES, _WEIGHTS,
                                         _MEANS, label_skew)
  normal = (np.sqrt(-2.0 * np.log(cr.uniform(user_draw(_NORMAL_1))))
            * np.cos(2 * np.pi * cr.uniform(user_draw(_NORMAL_2))))
  volume = np.exp(-0.5 * quantity_skew**2 + quantity_skew * normal)
  quit_hazard = skewed('quit_hazard')
  prefs = np.array([_normalized(a.event_pref) for a in ARCHETYPES])[arch]
  alpha = (((1 - feature_skew) * _GLOBAL_MIX + feature_skew * prefs)
           * (500.0 * (1 - feature_skew) + 5.0 * feature_skew) + 1e-6)
  # Dirichlet: normalized Gamma(alpha) draws, each by inversion.
  gammas = special.gammaincinv(alpha, cr.uniform(cr.bits(
      keys[:, _USER, None], np.broadcast_to(_MIX + np.arange(alpha.shape[1]), alpha.shape))))
  total = gammas.sum(axis=1, keepdims=True)
  mix = np.where(total > 0, gammas / np.where(total > 0, total, 1.0),
                 alpha / alpha.sum(axis=1, keepdims=True))
  quit_day = np.where(  # geometric on 1, 2, ..., by inversion
      quit_hazard > 0,
      np.ceil(np.log(cr.uniform(user_draw(_QUIT))) / np.log1p(-np.minimum(quit_hazard, 1.0))),
      num_days + 1)
  return _Traits(arch, skewed('active_prob'), skewed('daily_decay'),
                 np.maximum(1.0, field('sessions_mean') * volume),
                 field('events_per_session') * volume, mix, quit_day)


def _sessions(keys, t: _Traits, *, num_days: int):
  """Every session of the batch, by user then time: (its user, its start, its number
  of events after the app_open)."""
  n = len(keys)
  # Active days: before the quit day, each with its decayed probability.
  day = np.arange(num_days)
  active = ((cr.uniform(cr.bits(keys[:, _DAYS, None], day[None, :])) < t.active_prob[:, None]
             * np.exp(-t.daily_decay[:, None] * day[None, :]))
            & (day[None, :] < t.quit_day[:, None]))
  day_user, day_of = np.nonzero(active)  # active days, by user then day
  # Sessions: 1 + Poisson(sessions_mean - 1) on an active day, at most one per session
  # hour, the hours a uniformly random subset of that size.
  day_bits = cr.bits(keys[day_user, _DAY_SESSIONS], day_of)
  n_sessions = 1 + _count_at_most(
      *_poisson_table(t.sessions_mean - 1.0, np.full(n, _NUM_HOURS - 1)), day_user,
      day_bits >> cr.S32)
  subset = (day_bits & cr.LOW32) * _NUM_SUBSETS[n_sessions] >> cr.S32
  hour_mask = _SUBSETS[n_sessions, subset.astype(np.int64)]
  active_day, hour_of = np.nonzero((hour_mask[:, None] >> np.arange(_NUM_HOURS)) & 1)
  session_user = day_user[active_day]  # sessions in time order, by user
  session_bits = cr.ragged_bits(keys[:, _SESSIONS], np.bincount(session_user, minlength=n))
  starts = (ORIGIN_TIMESTAMP + day_of[active_day] * SECONDS_PER_DAY
            + _SESSION_HOURS[hour_of] * 3600
            + ((session_bits & cr.LOW32) * np.uint64(1200) >> cr.S32).astype(np.int64))
  # After its app_open, a session has Poisson(events_per_session) events (the table of
  # each user ending far in the tail).
  eps = t.events_per_session
  n_events = _count_at_most(
      *_poisson_table(eps, np.ceil(eps + 10 * np.sqrt(eps) + 10).astype(np.int64)),
      session_user, session_bits >> cr.S32)
  return session_user, starts, n_events


def _session_events(keys, mix, session_user, starts, n_events):
  """The log: per session its app_open, then its events at cumulative gaps of 5-89 s,
  squeezed into _MAX_SESSION_SECONDS when longer. One draw per position of a user's
  log (the app_opens' unused). Returns (timestamps, events, events per user)."""
  n = len(keys)
  size = n_events + 1
  start_pos = np.cumsum(size) - size
  per_user = np.bincount(session_user, weights=size, minlength=n).astype(np.int64)
  bits = cr.ragged_bits(keys[:, _EVENTS], per_user)
  gaps = 5 + ((bits & cr.LOW32) * np.uint64(85) >> cr.S32).astype(np.int64)
  gaps[start_pos] = 0
  cum = np.cumsum(gaps)
  offsets = cum - np.repeat(cum[start_pos], size)
  length = np.repeat(cum[start_pos + n_events] - cum[start_pos], size)
  long = length > _MAX_SESSION_SECONDS  # floor(o * M / l), exact in float64 here
  offsets[long] = np.floor(offsets[long] * float(_MAX_SESSION_SECONDS) / length[long])
  ts = np.repeat(starts, size) + offsets
  ev = _event_kinds(mix, bits, per_user).astype(np.int32) + 1
  ev[start_pos] = _SESSION_START
  return ts, ev, per_user


def _event_kinds(mix, bits, per_user) -> np.ndarray:
  """Each position's kind: the user's mix at the high 32 bits of its draw, by inversion
  (`_count_at_most`); a bucket of their top _BUCKET_BITS has one kind unless a CDF step
  is in it."""
  n = len(mix)
  buckets = 2**_BUCKET_BITS
  cdf_q = _quantized(np.cumsum(mix, axis=1))[:, :-1]  # kind k + 1 above step k
  steps_in = np.zeros((n, buckets + 1), np.int64)
  np.add.at(steps_in, (np.arange(n)[:, None], cdf_q >> np.int64(32 - _BUCKET_BITS)), 1)
  kind_of_bucket = np.where(steps_in[:, :buckets] > 0, -1, np.cumsum(
      steps_in[:, :buckets], axis=1)).astype(np.int8).ravel()
  kinds = kind_of_bucket[(np.repeat(np.arange(n, dtype=np.uint64) * np.uint64(buckets),
                                    per_user)
                          + (bits >> np.uint64(64 - _BUCKET_BITS))).astype(np.intp)]
  search = np.flatnonzero(kinds < 0)
  if len(search):
    kinds[search] = _count_at_most(
        (cdf_q + np.arange(n)[:, None] * (2 * _TWO32)).ravel(),
        np.arange(n + 1) * cdf_q.shape[1], np.repeat(np.arange(n), per_user)[search],
        bits[search] >> cr.S32)
  return kinds


def generate_user(index: int, **knobs) -> UserLog:
  """The log of user `index` (`generate_users` of one user)."""
  return generate_users([index], **knobs).log(0)


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
  batch = generate_users(np.arange(num_users), seed=seed, num_days=num_days,
                         quantity_skew=quantity_skew, label_skew=label_skew,
                         feature_skew=feature_skew)
  return [batch.log(k) for k in range(num_users)]
