"""Federated analytics queries: what each device computes, and what one user can move.

Each query turns a user's event log into one vector on the device (`contributions`),
already bounded to the query's per-user contribution bound; the server learns only the
DP sum of the vectors (`fl_analytics.analytics.release`) and turns it into answers
(`answers`). The bound fixes the L2 sensitivity of the sum (`sensitivity`): adding or
removing one user moves the true sum by that user's vector, whose L2 norm is at most
the bound's (`tests/analytics_queries_test.py` checks it on random and extreme users).

==================  ===================================================  ==============
query               one user's vector (on the device)                    L2 sensitivity
==================  ===================================================  ==============
feature_usage       0/1 per action used in the last `window_days`,       sqrt(m)
                    at most `max_features` = m of them (the most used)
funnel              0/1 per step: reached step j of the S `steps`, in    sqrt(S)
                    order within one session (steps reached: a prefix)
retention           one-hot signup cohort c (week of the first event):   sqrt(1 + |N|)
                    1 at (c, size) and at (c, N) if active on day N
                    after signup, for each N of `days`
session_length      hierarchical histogram (every level of the tree,     m * sqrt(depth)
                    TFF's layout) of at most m = `max_records` of the
                    user's session lengths (minutes), sampled on device
sessions_per_day    the same tree of one record: the user's sessions     sqrt(depth)
                    per active day
==================  ===================================================  ==============

Heavy hitters over an open vocabulary are `fl_analytics.analytics.heavy_hitters`
(strings, not vectors). Adding a query: a `Query` with its functions, one entry in
`REGISTRY`; the tests and the session loop over the registry.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fl_analytics.analytics import trees
from fl_analytics.data import counter_random as cr
from fl_analytics.data import features
from fl_analytics.data import synthetic

DAY = synthetic.SECONDS_PER_DAY


@dataclasses.dataclass(frozen=True)
class Population:
  """What every device knows of the data's frame: its actions and its days."""

  vocabulary: tuple[str, ...]
  origin_timestamp: int
  num_days: int
  seed: int = 0  # of the devices' own sampling (records of a histogram)


@dataclasses.dataclass(frozen=True)
class Answer:
  """One number a query releases, from the DP sums, with its noise's stddev."""

  item: str  # e.g. 'purchase' or 'day 7, cohort 2024-01-08'
  value: float
  stddev: float  # of `value`, from the known noise (delta method for ratios)
  unit: str  # 'users', '%', 'minutes', ...


@dataclasses.dataclass(frozen=True)
class Query:
  name: str
  description: str  # one line, what an app team asks
  bound: str  # the contribution bound, in words
  defaults: Mapping[str, Any]  # the query's settings (config `analytics.queries.NAME`)
  # (batch, population, settings) -> float32 [users, dim], each row within the bound.
  contributions: Callable[..., np.ndarray]
  # settings -> the L2 norm bound of one user's vector.
  sensitivity: Callable[[Mapping[str, Any]], float]
  # (sums [dim], the noise stddev of every sum, num_users, population, settings)
  # -> [Answer].
  answers: Callable[..., list[Answer]]
  dim: Callable[[Population, Mapping[str, Any]], int]
  hierarchical: bool = False  # the vector is a hierarchical histogram (TFF's layout)


def _user_of_event(batch: synthetic.LogBatch) -> np.ndarray:
  return np.repeat(np.arange(len(batch)), np.diff(batch.offsets))


def _session_ids(batch: synthetic.LogBatch, user: np.ndarray) -> np.ndarray:
  """Per event: its session's index over the batch (a gap of more than
  `features.SESSION_GAP_SECONDS`, or a new user, starts one)."""
  start = np.ones(len(user), bool)
  if len(user) > 1:
    start[1:] = ((np.diff(batch.timestamps) > features.SESSION_GAP_SECONDS)
                 | (np.diff(user) != 0))
  return np.cumsum(start) - 1


# --- feature usage -------------------------------------------------------------------

def _usage(batch, pop: Population, s) -> np.ndarray:
  k, n = len(pop.vocabulary), len(batch)
  end = pop.origin_timestamp + pop.num_days * DAY
  user = _user_of_event(batch)
  recent = batch.timestamps >= end - s['window_days'] * DAY
  counts = np.bincount(user[recent] * k + batch.events[recent],
                       minlength=n * k).reshape(n, k)
  m = s['max_features']
  if m < k:  # keep each user's m most used features (ties: the lower index)
    rank = np.argsort(np.argsort(-counts, axis=1, kind='stable'), axis=1)
    counts = np.where(rank < m, counts, 0)
  return (counts > 0).astype(np.float32)


def _usage_answers(sums, stddev, num_users, pop, s) -> list[Answer]:
  return [Answer(a, float(v), stddev, 'users') for a, v in zip(pop.vocabulary, sums)]


# --- funnel --------------------------------------------------------------------------

def _funnel(batch, pop: Population, s) -> np.ndarray:
  index = {a: i for i, a in enumerate(pop.vocabulary)}
  steps = [index[a] for a in s['steps']]
  user = _user_of_event(batch)
  session = _session_ids(batch, user)
  num_sessions = int(session[-1]) + 1 if len(session) else 0
  position = np.arange(len(user))
  reached = np.full(num_sessions, -1, np.int64)  # per session: the last step reached
  after = np.full(num_sessions, -1, np.int64)  # where that step happened
  for j, kind in enumerate(steps):
    # The first event of this step after the previous step's, in each session.
    ok = (batch.events == kind) & (reached[session] == j - 1) & (position > after[session])
    first = np.full(num_sessions, len(user), np.int64)
    np.minimum.at(first, session[ok], position[ok])
    hit = first < len(user)
    reached[hit], after[hit] = j, first[hit]
  furthest = np.full(len(batch), -1, np.int64)
  if num_sessions:
    session_user = user[np.searchsorted(session, np.arange(num_sessions))]
    np.maximum.at(furthest, session_user, reached)
  return (np.arange(len(steps))[None, :] <= furthest[:, None]).astype(np.float32)


def _share_answers(names, sums, stddev, num_users) -> list[Answer]:
  return [Answer(a, 100 * float(v) / num_users, 100 * stddev / num_users, '%')
          for a, v in zip(names, sums)]


def _funnel_answers(sums, stddev, num_users, pop, s) -> list[Answer]:
  names = [f'{j + 1}. {a}' for j, a in enumerate(s['steps'])]
  return _share_answers(names, sums, stddev, num_users)


# --- retention -----------------------------------------------------------------------

def _cohorts(pop: Population, s) -> int:
  return math.ceil(pop.num_days / s['cohort_days'])


def retention_cells(pop: Population, s) -> list[tuple[int, int]]:
  """(cohort, N) of the cells every member of the cohort can reach in the data: the
  cohort's last signup day plus N is a day of the data."""
  return [(c, n) for c in range(_cohorts(pop, s)) for n in s['days']
          if (c + 1) * s['cohort_days'] - 1 + n < pop.num_days]


def _retention(batch, pop: Population, s) -> np.ndarray:
  days, width = list(s['days']), 1 + len(s['days'])
  user = _user_of_event(batch)
  day = (batch.timestamps - pop.origin_timestamp) // DAY
  active = np.zeros((len(batch), pop.num_days + max(days) + 1), bool)
  inside = (day >= 0) & (day < pop.num_days)
  active[user[inside], day[inside]] = True
  has = np.diff(batch.offsets) > 0
  signup = np.where(has, np.argmax(active, axis=1), 0)
  cohort = signup // s['cohort_days']
  out = np.zeros((len(batch), _cohorts(pop, s) * width), np.float32)
  rows = np.flatnonzero(has)
  out[rows, cohort[rows] * width] = 1.0
  for i, n in enumerate(days):
    back = active[rows, signup[rows] + n]
    out[rows[back], cohort[rows[back]] * width + 1 + i] = 1.0
  return out


# A cohort's rates are released only when its noisy size is at least this many noise
# stddevs (post-processing): below it, the ratio of two noisy counts is noise.
MIN_COHORT_STDDEVS = 10


def _retention_answers(sums, stddev, num_users, pop, s) -> list[Answer]:
  width = 1 + len(s['days'])
  out = []
  for c, n in retention_cells(pop, s):
    size, kept = sums[c * width], sums[c * width + 1 + list(s['days']).index(n)]
    first = pop.origin_timestamp + c * s['cohort_days'] * DAY
    item = f'day {n}, cohort {np.datetime64(first, "s").astype("M8[D]")}'
    if size < max(MIN_COHORT_STDDEVS * stddev, 1.0):
      out.append(Answer(item, math.nan, math.nan, '%'))  # too few users to say
      continue
    rate = float(kept) / float(size)
    # Delta method for a ratio of independent noisy counts.
    sd = stddev * math.sqrt(1 + rate**2) / float(size)
    out.append(Answer(item, 100 * rate, 100 * sd, '%'))
  return out


# --- hierarchical histograms ---------------------------------------------------------

def _bins(values: np.ndarray, s) -> np.ndarray:
  """TFF's discretization: bin floor((v - lower) / width); outside [lower, upper):
  dropped (-1)."""
  lower, upper, n = s['lower'], s['upper'], s['num_bins']
  b = np.floor((values - lower) / ((upper - lower) / n)).astype(np.int64)
  return np.where((values >= lower) & (values < upper), np.minimum(b, n - 1), -1)


def _record_histogram(record_user, values, n_users, s, *, seed: int, record_keys):
  """[users, bins]: each user's records binned, at most `max_records` of them, chosen
  uniformly without replacement (TFF's 'sub-sampling' clip) by a counter-based draw
  keyed by (seed, the record's key): a user's choice is the same in any batch."""
  m = s.get('max_records', 1)
  u = cr.uniform(cr.bits(cr.stream_keys(seed, record_keys, 1)[:, 0], 0))
  order = np.lexsort((u, record_user))
  first = np.searchsorted(record_user[order], np.arange(n_users))
  rank = np.empty(len(order), np.int64)
  rank[order] = np.arange(len(order)) - first[record_user[order]]
  b = _bins(values, s)
  keep = (rank < m) & (b >= 0)
  return np.bincount(record_user[keep] * s['num_bins'] + b[keep],
                     minlength=n_users * s['num_bins']).reshape(n_users, s['num_bins'])


def _flat_tree(hist: np.ndarray, s) -> np.ndarray:
  return np.concatenate(trees.tree_layers(hist, s['arity']), axis=-1).astype(np.float32)


def _session_lengths(batch, user):
  """Per session: its user, its length in minutes and its start (a timestamp)."""
  session = _session_ids(batch, user)
  if not len(session):
    return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
  n = int(session[-1]) + 1
  first = np.searchsorted(session, np.arange(n))
  last = np.r_[first[1:], len(session)] - 1
  return (user[first], (batch.timestamps[last] - batch.timestamps[first]) / 60.0,
          batch.timestamps[first])


def _session_length(batch, pop: Population, s) -> np.ndarray:
  owner, minutes, start = _session_lengths(batch, _user_of_event(batch))
  hist = _record_histogram(owner, minutes, len(batch), s, seed=pop.seed,
                           record_keys=start)
  return _flat_tree(hist, s)


def _sessions_per_day(batch, pop: Population, s) -> np.ndarray:
  user = _user_of_event(batch)
  owner, _, _ = _session_lengths(batch, user)
  sessions = np.bincount(owner, minlength=len(batch))
  day = (batch.timestamps - pop.origin_timestamp) // DAY
  active = np.zeros(len(batch), np.int64)
  if len(user):
    key = np.unique(user * (pop.num_days + 1) + np.clip(day, 0, pop.num_days))
    active = np.bincount(key // (pop.num_days + 1), minlength=len(batch))
  has = active > 0
  hist = _record_histogram(np.flatnonzero(has), sessions[has] / active[has], len(batch),
                           {**s, 'max_records': 1}, seed=pop.seed,
                           record_keys=np.flatnonzero(has))
  return _flat_tree(hist, s)


def _tree_dim(pop, s) -> int:
  return sum(len(x) for x in trees.tree_layers(np.zeros(s['num_bins']), s['arity']))


def _tree_sensitivity(s) -> float:
  """TFF's bound for 'sub-sampling' (hierarchical_histogram_factory): m records, each
  one node per level, all in the same nodes at worst."""
  return s.get('max_records', 1) * math.sqrt(trees.tree_depth(s['num_bins'], s['arity']))


QUANTILES = (0.5, 0.9)


def bin_label(b: int, s) -> str:
  width = (s['upper'] - s['lower']) / s['num_bins']
  return f"[{s['lower'] + b * width:g}, {s['lower'] + (b + 1) * width:g})"


def _histogram_answers(sums, stddev, num_users, pop, s) -> list[Answer]:
  """The leaves' counts (Honaker's efficient estimate from every level, TFF's
  `HierarchicalHistogramDecoder`) and the quantiles of the consistent tree."""
  leaves, quantiles = trees.decode_tree(sums, s, QUANTILES)
  sd_leaf = trees.leaf_stddev(stddev, s)
  out = [Answer(bin_label(b, s), float(v), sd_leaf, s['unit_count'])
         for b, v in enumerate(leaves)]
  # Quantiles: the bin's midpoint; their noise has no closed form (stddev NaN).
  out += [Answer(f'p{round(100 * q)}', float(v), math.nan, s['unit'])
          for q, v in zip(QUANTILES, quantiles)]
  return out


REGISTRY: dict[str, Query] = {q.name: q for q in (
    Query('feature_usage', 'How many users used each feature in the last week?',
          'at most max_features features (its most used), each 0/1',
          {'window_days': 7, 'max_features': 20},
          _usage, lambda s: math.sqrt(s['max_features']), _usage_answers,
          lambda pop, s: len(pop.vocabulary)),
    Query('funnel', 'What share of users reach each step of the purchase funnel, in '
          'order, within one session?', 'one 0/1 per step (S steps)',
          {'steps': ('item_view', 'add_to_cart', 'checkout_start', 'shipping_info',
                     'payment_info', 'purchase')},
          _funnel, lambda s: math.sqrt(len(s['steps'])), _funnel_answers,
          lambda pop, s: len(s['steps'])),
    Query('retention', 'Of the users who signed up in a week, what share is active N '
          'days later?', 'one cohort: its size and one 0/1 per N',
          {'days': (1, 7, 14, 28), 'cohort_days': 7},
          _retention, lambda s: math.sqrt(1 + len(s['days'])), _retention_answers,
          lambda pop, s: _cohorts(pop, s) * (1 + len(s['days']))),
    Query('session_length', 'How long are sessions (minutes): the distribution, '
          'median and 90th percentile?', 'at most max_records sessions',
          {'lower': 0.0, 'upper': 64.0, 'num_bins': 32, 'arity': 2, 'max_records': 4,
           'unit': 'minutes', 'unit_count': 'sessions'},
          _session_length, _tree_sensitivity, _histogram_answers, _tree_dim,
          hierarchical=True),
    Query('sessions_per_day', 'How many sessions do users have on a day they are '
          'active?', 'one record (the user\'s mean)',
          {'lower': 1.0, 'upper': 9.0, 'num_bins': 16, 'arity': 2,
           'unit': 'sessions per active day', 'unit_count': 'users'},
          _sessions_per_day, _tree_sensitivity, _histogram_answers, _tree_dim,
          hierarchical=True),
)}


def get(name: str) -> Query:
  if name not in REGISTRY:
    raise ValueError(f'analytics.queries: unknown query {name!r}; the queries are '
                     f'{", ".join(REGISTRY)} (and heavy_hitters).')
  return REGISTRY[name]


def settings_of(query: Query, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
  """The query's defaults with `overrides`; raises ValueError naming an unknown key."""
  overrides = dict(overrides or {})
  unknown = sorted(set(overrides) - set(query.defaults))
  if unknown:
    raise ValueError(f'analytics.queries.{query.name}: unknown setting(s) '
                     f'{", ".join(unknown)}; its settings are '
                     f'{", ".join(query.defaults)}.')
  return {**query.defaults, **overrides}


def check_settings(query: Query, s: Mapping[str, Any], pop: Population) -> None:
  """Raises ValueError naming a bad setting of `query` and what is allowed."""
  key = f'analytics.queries.{query.name}'
  for name in ('window_days', 'max_features', 'cohort_days', 'num_bins', 'max_records'):
    if name in s and not (isinstance(s[name], int) and s[name] >= 1):
      raise ValueError(f'{key}.{name} must be a positive integer. Found {s[name]!r}.')
  if 'max_features' in s and s['max_features'] > len(pop.vocabulary):
    raise ValueError(f'{key}.max_features must be at most the {len(pop.vocabulary)} '
                     f'actions. Found {s["max_features"]}.')
  unknown = [a for a in s.get('steps', ()) if a not in pop.vocabulary]
  if 'steps' in s and (not s['steps'] or unknown):
    raise ValueError(f'{key}.steps must be actions of the data\'s vocabulary; '
                     f'{unknown or "none"} are not.')
  if 'days' in s and not retention_cells(pop, s):
    raise ValueError(f'{key}.days: no cohort can be followed {max(s["days"])} days in '
                     f'{pop.num_days} days of data.')
  if 'arity' in s and not (isinstance(s['arity'], int) and s['arity'] >= 2
                           and s['upper'] > s['lower']):
    raise ValueError(f'{key}: arity must be an integer >= 2 and upper > lower. Found '
                     f'arity={s["arity"]!r}, lower={s["lower"]!r}, upper={s["upper"]!r}.')
