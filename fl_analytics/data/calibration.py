"""What a population's logs say about its users, beside published measurements of apps.

`statistics(batch, num_days=...)` measures a batch of logs the way app analytics
measure real users: sessions split at gaps of more than `features.SESSION_GAP_SECONDS`,
a user's first active day as its install day, classic day-N retention (active exactly
N days after install), DAU/MAU over days 30 to 59, the share of sessions starting
between 21:00 and 23:00, the share of events that the most used 12% of actions make,
and, per archetype that has a published counterpart (`CATEGORY_OF`), sessions per
active day and session minutes. Any generator's logs, or an event file's, can be
measured; `experiments/calibrate_population.py` prints them beside `PUBLISHED`.

The published values are industry aggregates reported by analytics vendors and
trade sites (their sources: `Published.source`); they differ by definition (e.g. of a
session or a day) and by sample, so each is a range, and a statistic within its range
is consistent with it, not proof of realism.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fl_analytics.data import features
from fl_analytics.data import synthetic

RETENTION_DAYS = (1, 7, 30)
# Archetypes of the behaviour models that stand for a published app category.
CATEGORY_OF = {'shopper': 'e-commerce', 'social': 'social media', 'listener': 'streaming'}
_SESSIONS_TABLE = ('https://mobileapp.wiki/en/metrics/session-length-frequency, "Session '
                   'Benchmarks by Category (2026)"')
_RETENTION = ('industry averages of Adjust and AppsFlyer data as summarized by '
              'https://opendoordigital.dev/blog/mobile-app-retention-strategies.html '
              '(D1 25-30%, D7 12-15%, D30 6-8%) and https://wifitalents.com/mobile-app-'
              'retention-rate-statistics (D1 25.3%, D30 5.7%)')


@dataclasses.dataclass(frozen=True)
class Published:
  name: str
  description: str
  low: float
  high: float
  source: str


PUBLISHED: tuple[Published, ...] = (
    Published('retention_d1', 'active 1 day after install', 0.22, 0.32, _RETENTION),
    Published('retention_d7', 'active 7 days after install', 0.09, 0.16, _RETENTION),
    Published('retention_d30', 'active 30 days after install', 0.04, 0.09, _RETENTION),
    Published('dau_mau', 'daily over monthly active users', 0.15, 0.20,
              'https://zipdo.co/statistics/mobile-app-retention-rate/ ("DAU make up '
              '15-20% of MAU for average apps")'),
    Published('evening_session_share', 'share of sessions starting 21:00-23:00', 0.20,
              0.35, 'https://zipdo.co/statistics/mobile-app-retention-rate/ ("30% of app '
              'interactions occur between 9 PM and 11 PM")'),
    Published('top_12pct_action_share', 'share of events by the most used 12% of actions',
              0.70, 0.90, 'Pendo, 2019 Feature Adoption Report, https://pendo.io/pendo-blog/'
              'five-ways-to-increase-feature-adoption-rates ("80% of click volume came from '
              'as little as 12% of features")'),
    Published('sessions_per_day_e-commerce', 'sessions per active day (e-commerce)', 1, 2,
              _SESSIONS_TABLE),
    Published('sessions_per_day_social media', 'sessions per active day (social media)', 6,
              10, _SESSIONS_TABLE),
    Published('sessions_per_day_streaming', 'sessions per active day (streaming)', 1, 2,
              _SESSIONS_TABLE),
    Published('session_minutes_e-commerce', 'mean session minutes (e-commerce)', 5, 10,
              _SESSIONS_TABLE),
    Published('session_minutes_social media', 'mean session minutes (social media)', 8, 15,
              _SESSIONS_TABLE),
    Published('session_minutes_streaming', 'mean session minutes (streaming)', 20, 40,
              _SESSIONS_TABLE),
)


def _sessions(batch: synthetic.LogBatch):
  """(user, first event time, last event time) of every session of the batch."""
  ts = np.asarray(batch.timestamps, np.int64)
  sizes = np.diff(batch.offsets)
  user = np.repeat(np.arange(len(batch)), sizes)
  start = np.ones(len(ts), bool)
  start[1:] = (np.diff(ts) > features.SESSION_GAP_SECONDS) | (user[1:] != user[:-1])
  first = np.flatnonzero(start)
  last = np.append(first[1:], len(ts)) - 1
  return user[first], ts[first], ts[last]


def statistics(batch: synthetic.LogBatch, *, num_days: int,
               origin_timestamp: int = synthetic.ORIGIN_TIMESTAMP) -> dict[str, float]:
  """The statistics of `PUBLISHED` that `batch` has (module docstring)."""
  day_of = lambda t: (t - origin_timestamp) // synthetic.SECONDS_PER_DAY
  user, start, end = _sessions(batch)
  keep = (day_of(start) >= 0) & (day_of(start) < num_days)
  user, start, end = user[keep], start[keep], end[keep]
  active = np.zeros((len(batch), num_days), bool)
  active[user, day_of(start)] = True
  out: dict[str, float] = {}
  installed = active.any(axis=1)
  install = np.argmax(active, axis=1)
  for n in RETENTION_DAYS:
    seen = np.flatnonzero(installed & (install + n < num_days))
    if len(seen):
      out[f'retention_d{n}'] = float(active[seen, install[seen] + n].mean())
  if num_days >= 60:
    month = active[:, 30:60]
    out['dau_mau'] = float(month.sum(axis=0).mean() / max(1, month.any(axis=1).sum()))
  hour = (start % synthetic.SECONDS_PER_DAY) // 3600
  out['evening_session_share'] = float(np.mean((hour >= 21) & (hour < 23)))
  counts = np.sort(np.bincount(np.asarray(batch.events, np.int64)))[::-1]
  top = max(1, int(round(0.12 * len(counts))))
  out['top_12pct_action_share'] = float(counts[:top].sum() / max(1, counts.sum()))
  for archetype, category in CATEGORY_OF.items():
    mine = np.array([a == archetype for a in batch.archetypes], bool)
    if not mine.any():
      continue
    days = active[mine].sum()
    out[f'sessions_per_day_{category}'] = float(mine[user].sum() / max(1, days))
    out[f'session_minutes_{category}'] = float((end - start)[mine[user]].mean() / 60)
  return out


def table(stats: dict[str, float]) -> list[dict]:
  """One row per published statistic the population has: its value beside the
  published range, and whether it is within."""
  return [{'name': p.name, 'description': p.description, 'published_low': p.low,
           'published_high': p.high, 'synthetic': stats[p.name],
           'within': bool(p.low <= stats[p.name] <= p.high), 'source': p.source}
          for p in PUBLISHED if p.name in stats]

