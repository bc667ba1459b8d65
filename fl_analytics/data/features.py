"""On-device featurization: one user's event log -> churn examples.

For each observation day `d` (every `stride_days`, once a full trailing window is
available and a full label horizon remains before the end of data collection), the
features summarize the trailing window of `window_days` days ending with day `d`, and
the label is 1 when the user has no event in the next `horizon_days` days (churn).
Only days on which the user was active at least once in the window are observed:
churn is predicted for current users, not for users who are already gone.

Everything is computed from the user's own log (no population statistics), as it would
be on the device. Sessions are derived from the timestamps: a gap of more than
`SESSION_GAP_SECONDS` starts a new session, so the same code serves real event logs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fl_analytics.data.synthetic import SECONDS_PER_DAY

SESSION_GAP_SECONDS = 30 * 60

# After one log count per action of the vocabulary (`feature_names`).
SUMMARY_FEATURES: tuple[str, ...] = (
    'log_sessions',
    'active_day_share',
    'last_week_active_share',
    'recency',
    'trend',
    'log_events_per_session',
)


@dataclasses.dataclass(frozen=True)
class ChurnExtras:
  """Churn features after SUMMARY_FEATURES that a behaviour model declares
  (`generators.churn_extras`), over indices into its vocabulary; none by default."""

  # (start, end): min(1, end events / max(start events, 1)) in the window.
  funnels: tuple[tuple[int, int], ...] = ()
  # Days since the last such event, within the window, / window_days (1: none in it).
  key_actions: tuple[int, ...] = ()
  # log(1 + days since the user's first event in the data).
  tenure: bool = False

  @property
  def size(self) -> int:
    return len(self.funnels) + len(self.key_actions) + int(self.tenure)

  def definitions(self, vocabulary, window_days: int) -> dict[str, str]:
    """Each feature's name -> how the device computes it, in feature order."""
    v = vocabulary
    out = {f'{v[a]}_to_{v[b]}': (f'min(1, {v[b]} events in the window / max({v[a]} '
                                 'events in the window, 1))') for a, b in self.funnels}
    out.update({f'days_since_{v[a]}': (f'(today - the last day with a {v[a]} event) / '
                                       f'{window_days}, or 1 when none is within the '
                                       'window') for a in self.key_actions})
    if self.tenure:
      out['log_tenure_days'] = 'log(1 + today - the first day with an event in the data)'
    return out

  def names(self, vocabulary) -> tuple[str, ...]:
    return tuple(self.definitions(vocabulary, window_days=0))

  def to_json(self) -> dict:
    """The device spec's form (vocabulary indices, as in the logs); `from_json`."""
    return {'funnels': [list(f) for f in self.funnels],
            'key_actions': list(self.key_actions), 'tenure': self.tenure}

  @classmethod
  def from_json(cls, spec: dict) -> 'ChurnExtras':
    return cls(tuple(tuple(f) for f in spec.get('funnels', ())),
               tuple(spec.get('key_actions', ())), bool(spec.get('tenure', False)))


NO_EXTRAS = ChurnExtras()


def feature_names(vocabulary, extras: ChurnExtras = NO_EXTRAS) -> tuple[str, ...]:
  """The churn features over logs of `vocabulary` (`generators.vocabulary`), in order."""
  return (tuple(f'log_count_{e}' for e in vocabulary) + SUMMARY_FEATURES
          + extras.names(vocabulary))


def num_features(vocabulary, extras: ChurnExtras = NO_EXTRAS) -> int:
  return len(feature_names(vocabulary, extras))


def check_window(*, window_days: int, horizon_days: int, stride_days: int) -> None:
  for name, value in (
      ('window_days', window_days),
      ('horizon_days', horizon_days),
      ('stride_days', stride_days),
  ):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f'data.{name} must be a positive integer. Found {value!r}.')
  if window_days < 2:
    raise ValueError(f'data.window_days must be at least 2. Found {window_days}.')


def churn_examples(
    timestamps: np.ndarray,
    events: np.ndarray,
    *,
    origin_timestamp: int,
    num_days: int,
    window_days: int,
    horizon_days: int,
    stride_days: int,
    num_kinds: int,
    extras: ChurnExtras = NO_EXTRAS,
) -> tuple[np.ndarray, np.ndarray]:
  """Churn examples of one user (`churn_examples_many` of one).

  Args:
    timestamps: int seconds since the epoch, sorted ascending.
    events: int indices into the vocabulary, aligned with `timestamps`.
    origin_timestamp: start of day 0 of data collection.
    num_days: length of data collection; events after it are ignored.
    window_days: length of the trailing feature window.
    horizon_days: the label looks this many days ahead.
    stride_days: days between two observation days.
    num_kinds: the size of the vocabulary (`generators.vocabulary`).
    extras: the behaviour model's further features (`generators.churn_extras`).

  Returns:
    `(x, y)`: float32 features of shape `[n, num_kinds + len(SUMMARY_FEATURES) +
    the extras]` (`feature_names`) and float32 labels `[n]`.
  """
  return churn_examples_many(
      timestamps, events, np.array([0, len(timestamps)]), origin_timestamp=origin_timestamp,
      num_days=num_days, window_days=window_days, horizon_days=horizon_days,
      stride_days=stride_days, num_kinds=num_kinds, extras=extras)[0]


def churn_examples_many(
    timestamps: np.ndarray,
    events: np.ndarray,
    offsets: np.ndarray,
    *,
    origin_timestamp: int,
    num_days: int,
    window_days: int,
    horizon_days: int,
    stride_days: int,
    num_kinds: int,
    extras: ChurnExtras = NO_EXTRAS,
) -> list[tuple[np.ndarray, np.ndarray]]:
  """Churn examples of many users at once, each user's computed from its own log only.

  User k's log is `timestamps[offsets[k]:offsets[k + 1]]` (and `events`), with the
  arguments of `churn_examples`; returns user k's `(x, y)` at position k. Vectorized
  over the users' events, days and observation days.
  """
  check_window(
      window_days=window_days, horizon_days=horizon_days, stride_days=stride_days
  )
  offsets = np.asarray(offsets, np.int64)
  n = len(offsets) - 1
  empty = (np.zeros((0, num_kinds + len(SUMMARY_FEATURES) + extras.size), np.float32),
           np.zeros((0,), np.float32))
  obs_days = np.arange(window_days - 1, num_days - horizon_days, stride_days)
  if len(obs_days) == 0 or offsets[-1] == 0:
    return [empty] * n

  daily = _daily_totals(timestamps, events, offsets, origin_timestamp=origin_timestamp,
                        num_days=num_days, num_kinds=num_kinds)
  c_counts, c_sessions, c_active, active = daily
  win_active = c_active[:, obs_days + 1] - c_active[:, obs_days + 1 - window_days]
  who, when = np.nonzero(win_active > 0)  # [users, observation days] with activity
  if not len(who):
    return [empty] * n
  obs = obs_days[when]
  pick = lambda c, end, length: c[who, end + 1] - c[who, end + 1 - length]
  x = _window_features(pick, c_counts, c_sessions, c_active, active, who=who, obs=obs,
                       win_active=win_active[who, when], window_days=window_days,
                       num_days=num_days)
  if extras != NO_EXTRAS:
    x = np.concatenate([x, _extra_features(extras, pick, c_counts, active, who=who,
                                           obs=obs, window_days=window_days)], axis=1)
  future = pick(c_active, obs + horizon_days, horizon_days)
  y = (future == 0).astype(np.float32)
  bounds = np.concatenate([[0], np.cumsum(np.bincount(who, minlength=n))])
  return [(x[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _daily_totals(timestamps, events, offsets, *, origin_timestamp, num_days, num_kinds):
  """Per user and day, cumulative over days from a zero row: event counts by kind,
  sessions started and active days; and the active days themselves."""
  n = len(offsets) - 1
  timestamps = np.asarray(timestamps, np.int64)
  sizes = np.diff(offsets)
  user = np.repeat(np.arange(n), sizes)
  day = (timestamps - origin_timestamp) // SECONDS_PER_DAY
  keep = (day >= 0) & (day < num_days)
  session_start = np.ones(len(timestamps), bool)
  session_start[1:] = np.diff(timestamps) > SESSION_GAP_SECONDS
  session_start[offsets[:-1][sizes > 0]] = True  # every user's first event
  slot = (user * (num_days + 1) + day + 1)[keep]  # row 0 of a user: the cumsum origin
  v = num_kinds
  counts = np.bincount(slot * v + np.asarray(events, np.int64)[keep],
                       minlength=n * (num_days + 1) * v).astype(np.float64).reshape(
                           n, num_days + 1, v)
  sessions = np.bincount(slot[session_start[keep]], minlength=n * (num_days + 1)).astype(
      np.float64).reshape(n, num_days + 1)
  active = (counts[:, 1:].sum(axis=2) > 0).astype(np.float64)
  return (np.cumsum(counts, axis=1), np.cumsum(sessions, axis=1),
          np.concatenate([np.zeros((n, 1)), np.cumsum(active, axis=1)], axis=1), active)


def _window_features(pick, c_counts, c_sessions, c_active, active, *, who, obs,
                     win_active, window_days, num_days) -> np.ndarray:
  """The features (`feature_names`) of each observed (user, day) window."""
  win_counts = pick(c_counts, obs, window_days)
  win_sessions = pick(c_sessions, obs, window_days)
  half = window_days // 2
  recent_half = pick(c_active, obs, half)
  early_half = win_active - recent_half
  last_week = pick(c_active, obs, min(7, window_days))
  # Days since the last active day, within the window (the user was active in it).
  last_active = np.maximum.accumulate(
      np.where(active > 0, np.arange(num_days), -1), axis=1)[who, obs]
  recency = (obs - last_active) / window_days
  total_events = win_counts.sum(axis=1)
  return np.concatenate(
      [
          np.log1p(win_counts),
          np.log1p(win_sessions)[:, None],
          (win_active / window_days)[:, None],
          (last_week / min(7, window_days))[:, None],
          recency[:, None],
          ((recent_half - early_half) / half)[:, None],
          np.log1p(total_events / np.maximum(win_sessions, 1.0))[:, None],
      ],
      axis=1,
  ).astype(np.float32)


def _extra_features(extras: ChurnExtras, pick, c_counts, active, *, who, obs,
                    window_days) -> np.ndarray:
  """The extras' features (`ChurnExtras`) of each observed (user, day) window."""
  columns = []
  if extras.funnels:
    win = pick(c_counts, obs, window_days)
    starts, ends = (win[:, [f[k] for f in extras.funnels]] for k in (0, 1))
    columns.append(np.minimum(1.0, ends / np.maximum(starts, 1.0)))
  if extras.key_actions:
    keys = list(extras.key_actions)
    days = np.arange(c_counts.shape[1] - 1)
    present = np.diff(c_counts[:, :, keys], axis=1) > 0  # [users, days, keys]
    last = np.maximum.accumulate(np.where(present, days[None, :, None], -1),
                                 axis=1)[who, obs]
    since = obs[:, None] - last
    columns.append(np.where(since < window_days, since / window_days, 1.0))
  if extras.tenure:
    first = np.argmax(active > 0, axis=1)[who]
    columns.append(np.log1p(obs - first)[:, None])
  return np.concatenate(columns, axis=1).astype(np.float32)


# Time-gap buckets of the next-action context (`with_gaps`): the seconds between an
# action and the one before it in its session, bucketed at these upper bounds (the
# last bucket: longer); a session's first action has bucket GAP_SESSION_START, padding
# GAP_PAD.
GAP_EDGES_SECONDS = (2, 5, 10, 20, 40, 80, 160, 320)
GAP_SESSION_START = len(GAP_EDGES_SECONDS) + 1
GAP_PAD = GAP_SESSION_START + 1
NUM_GAP_TOKENS = GAP_PAD + 1


def next_action_examples(
    timestamps: np.ndarray,
    events: np.ndarray,
    *,
    origin_timestamp: int,
    num_days: int,
    context: int,
    max_examples: int,
    pad_action: int,
    with_gaps: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """Next-action examples of one user: each action in a session from the ones before.

  Sessions are split at gaps of more than `SESSION_GAP_SECONDS`. Every event that is
  not the first of its session is a target; its context is the `context` events before
  it in the same session, padded on the left with `pad_action` (the context token
  before a session's first action: the size of the vocabulary). Only events within the
  `num_days` days of data collection count; the most recent `max_examples` are kept.

  With `with_gaps`, each context position also holds its time-gap bucket (the seconds
  since the action before it in the session, bucketed by `GAP_EDGES_SECONDS`; a
  session's first action `GAP_SESSION_START`, padding `GAP_PAD`).

  Returns:
    `(x, y)`: int32 contexts `[n, context]` (`[n, context, 2]`: action, gap bucket,
    with `with_gaps`) and int32 targets `[n]`.
  """
  if context < 1 or max_examples < 1:
    raise ValueError(f'context and max_examples must be >= 1. Found {context}, '
                     f'{max_examples}.')
  timestamps = np.asarray(timestamps, np.int64)
  events = np.asarray(events, np.int64)
  day = (timestamps - origin_timestamp) // SECONDS_PER_DAY
  keep = (day >= 0) & (day < num_days)
  timestamps, events = timestamps[keep], events[keep]
  shape = (context, 2) if with_gaps else (context,)
  empty = (np.zeros((0, *shape), np.int32), np.zeros((0,), np.int32))
  if len(events) < 2:
    return empty
  session_start = np.ones(len(events), bool)
  session_start[1:] = np.diff(timestamps) > SESSION_GAP_SECONDS
  session_id = np.cumsum(session_start)
  targets = np.flatnonzero(~session_start)[-max_examples:]
  if not len(targets):
    return empty
  x = np.full((len(targets), context, 2 if with_gaps else 1), pad_action, np.int32)
  if with_gaps:
    x[..., 1] = GAP_PAD
    buckets = np.searchsorted(GAP_EDGES_SECONDS,
                              np.diff(timestamps, prepend=timestamps[0])).astype(np.int32)
    buckets[session_start] = GAP_SESSION_START
  for j in range(1, context + 1):  # position context - j holds the event j steps back
    back = targets - j
    valid = (back >= 0) & (session_id[np.maximum(back, 0)] == session_id[targets])
    x[valid, context - j, 0] = events[back[valid]]
    if with_gaps:
      x[valid, context - j, 1] = buckets[back[valid]]
  return (x if with_gaps else x[..., 0]), events[targets].astype(np.int32)
