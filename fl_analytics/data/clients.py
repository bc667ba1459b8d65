"""The federated datasets of the tasks: training users (the clients) and held-out users.

`build_data` generates the synthetic population (or, with
`data.source=events:PATH`, reads the users' logs from an event file,
`fl_analytics.data.events`), featurizes each user's log on its own (as a device
would; churn or next-action examples, `fl_analytics.data.features`), and splits the users, not the examples: a held-out
fraction of users is never trained on and serves for evaluation, so every example
belongs to exactly one user on one side of the split.

Training users with no example (e.g. never active in an observation window) are left out of
the population that is sampled; `population_size` is the number of users that can be
sampled, and it is what the privacy accountant uses.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

from absl import logging
import numpy as np

from fl_analytics.data import events
from fl_analytics.data import features
from fl_analytics.data import synthetic


@dataclasses.dataclass(frozen=True)
class FederatedData:
  """The users of one task (churn or next action), split into training and held out."""

  train_user_ids: list[str]
  train_examples: list[tuple[np.ndarray, np.ndarray]]  # per user: x [n, F], y [n, 1]
  eval_x: np.ndarray
  eval_y: np.ndarray  # [n, 1]
  num_eval_users: int
  num_users_without_examples: int
  # Examples per held-out user, in the order of eval_x (each user's in time order).
  eval_sizes: tuple[int, ...] = ()
  source_note: str = ''  # where the logs came from, for the run's log
  eval_user_ids: tuple[str, ...] = ()  # the held-out users, aligned with eval_sizes
  num_opted_out: int = 0  # users removed before anything else (clients.opt_out)

  @property
  def population_size(self) -> int:
    return len(self.train_user_ids)

  def eval_users(self) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each held-out user's `(x, y)`, in time order (users without examples left out)."""
    bounds = np.cumsum((0,) + self.eval_sizes)
    return [(self.eval_x[a:b], self.eval_y[a:b])
            for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

  def eval_sample(self, max_users: int, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A fixed sample of at most `max_users` of `eval_users()` (0: all), seeded, in order.

    The same for every round and every launch of a run, so per-round metrics follow
    one set of users.
    """
    users = self.eval_users()
    if not max_users or max_users >= len(users):
      return users
    chosen = np.random.default_rng([seed, 0xE7A1]).choice(len(users), size=max_users,
                                                           replace=False)
    return [users[i] for i in np.sort(chosen)]

  @property
  def eval_base_rate(self) -> float:
    return float(self.eval_y.mean()) if len(self.eval_y) else float('nan')


def check_data_config(data) -> None:
  synthetic_source = events.source_path(data.source) is None
  if data.unknown_events not in events.UNKNOWN_EVENT_POLICIES:
    raise ValueError(f'data.unknown_events must be one of '
                     f'{", ".join(events.UNKNOWN_EVENT_POLICIES)}. '
                     f'Found {data.unknown_events!r}.')
  events.parse_time_range(data.min_time, data.max_time)
  if not 0 < data.eval_fraction < 1:
    raise ValueError(f'data.eval_fraction must be in (0, 1). Found {data.eval_fraction}.')
  features.check_window(
      window_days=data.window_days,
      horizon_days=data.horizon_days,
      stride_days=data.stride_days,
  )
  if synthetic_source and data.num_days < data.window_days + data.horizon_days:
    raise ValueError(
        f'data.num_days={data.num_days} leaves no observation day: it must be at '
        f'least data.window_days + data.horizon_days = '
        f'{data.window_days + data.horizon_days}.')


def load_logs(data, *, seed: int) -> tuple[list[synthetic.UserLog], int, int, str]:
  """The users' logs of config `data`: (logs, origin timestamp, days, a note).

  Synthetic: `data.num_users` users over `data.num_days` days from
  `synthetic.ORIGIN_TIMESTAMP`. From an event file: its users, from midnight (UTC) of
  its first event's day through its last event's day; `data.num_users`,
  `data.num_days` and the skew knobs do not apply.
  """
  path = events.source_path(data.source)
  if path is None:
    logs = synthetic.generate_population(
        num_users=data.num_users,
        seed=seed,
        num_days=data.num_days,
        quantity_skew=data.quantity_skew,
        label_skew=data.label_skew,
        feature_skew=data.feature_skew,
    )
    return logs, synthetic.ORIGIN_TIMESTAMP, data.num_days, (
        f'synthetic population of {data.num_users} users, {data.num_days} days')
  loaded = events.load_events(path, unknown_events=data.unknown_events,
                              time_range=(data.min_time, data.max_time))
  for warning in loaded.warnings:
    logging.warning('%s', warning)
  needed = data.window_days + data.horizon_days
  if loaded.num_days < needed:
    raise events.EventLogError(
        f'{path}: its events span {loaded.num_days} days; churn examples need at least '
        f'data.window_days + data.horizon_days = {needed}.')
  dropped = sum(loaded.unknown_events.values())
  note = (f'{path}: {loaded.num_rows} events of {len(loaded.logs)} users over '
          f'{loaded.num_days} days')
  if dropped:
    top = sorted(loaded.unknown_events.items(), key=lambda kv: -kv[1])[:5]
    note += (f'; {dropped} events with names outside the vocabulary dropped ('
             + ', '.join(f'{k!r}: {v}' for k, v in top) + ')')
  return loaded.logs, loaded.origin_timestamp, loaded.num_days, note


def without_opted_out(logs: list[synthetic.UserLog], opt_out: float, *,
                      seed: int) -> tuple[list[synthetic.UserLog], int]:
  """The logs of the users who did not opt out (`devices.opted_out`), and how many did."""
  from fl_analytics import devices  # pylint: disable=g-import-not-at-top

  removed = set(devices.opted_out(len(logs), opt_out, seed=seed).tolist())
  return [log for i, log in enumerate(logs) if i not in removed], len(removed)


def churn_examples_fn(data) -> Callable:
  """One user's churn examples for config `data` (`features.churn_examples`)."""
  return functools.partial(features.churn_examples, window_days=data.window_days,
                           horizon_days=data.horizon_days, stride_days=data.stride_days)


def next_action_examples_fn(data) -> Callable:
  """One user's next-action examples for config `data` (`features.next_action_examples`)."""
  return functools.partial(features.next_action_examples, context=data.context_events,
                           max_examples=data.max_examples_per_user)


def build_churn_data(data, *, seed: int, opt_out: float = 0.0) -> FederatedData:
  """`build_data` with churn examples."""
  return build_data(data, seed=seed, opt_out=opt_out, examples_fn=churn_examples_fn(data),
                    what='churn')


def build_data(data, *, seed: int, examples_fn: Callable, what: str,
               opt_out: float = 0.0) -> FederatedData:
  """Loads, featurizes and splits the population described by config `data`.

  `examples_fn(timestamps, events, origin_timestamp=, num_days=)` featurizes one user's
  log into `(x, y)` with one label per example. A fraction `opt_out` of the users
  (`devices.opted_out`, seeded by `seed`) is removed first: their logs are never
  featurized, trained on or evaluated.
  """
  check_data_config(data)
  logs, origin, num_days, note = load_logs(data, seed=seed)
  logs, num_opted_out = without_opted_out(logs, opt_out, seed=seed)
  num_users = len(logs)
  num_eval = int(round(data.eval_fraction * num_users))
  if num_eval < 1 or num_eval >= num_users:
    raise ValueError(
        f'data.eval_fraction={data.eval_fraction} of {num_users} users '
        'must leave at least one user on each side of the split.')
  order = np.random.default_rng([seed, 0x5EED, 1]).permutation(num_users)
  eval_set = set(order[:num_eval].tolist())

  train_ids, train_examples, eval_parts, eval_ids = [], [], [], []
  without = 0
  for index, log in enumerate(logs):
    x, y = examples_fn(log.timestamps, log.events, origin_timestamp=origin,
                       num_days=num_days)
    y = y[:, None]
    if index in eval_set:
      eval_parts.append((x, y))
      eval_ids.append(log.user_id)
    elif len(y) == 0:
      without += 1
    else:
      # Shuffle on the device, once: examples of a user are in time order otherwise.
      perm = np.random.default_rng([seed, index, 2]).permutation(len(y))
      train_ids.append(log.user_id)
      train_examples.append((x[perm], y[perm]))
  if not train_ids:
    raise ValueError(
        f'No training user has a {what} example ({note}).')
  return FederatedData(
      train_user_ids=train_ids,
      train_examples=train_examples,
      eval_x=np.concatenate([x for x, _ in eval_parts]),
      eval_y=np.concatenate([y for _, y in eval_parts]),
      num_eval_users=num_eval,
      num_users_without_examples=without,
      eval_sizes=tuple(len(y) for _, y in eval_parts),
      source_note=note,
      num_opted_out=num_opted_out,
      eval_user_ids=tuple(eval_ids),
  )
