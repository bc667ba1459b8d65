"""The federated datasets of the tasks: training users (the clients) and held-out users.

`build_data` describes the population of a config: the synthetic generator (or, with
`data.source=events:PATH`, the users' logs of an event file,
`fl_analytics.data.events`) and the split of its users, not of examples: a held-out
fraction of users is never trained on and serves for evaluation, so every example
belongs to exactly one user on one side of the split. Users are made when they are
used: a user's log is generated (or read) and featurized on its own, as a device
would (churn or next-action examples, `fl_analytics.data.features`), when the user is
sampled or evaluated (`FederatedData`).

`population_size`, the number of users that can be sampled and what the privacy
accountant uses, is every enrolled training user, whether or not the user has an
example: one without sends a zero update. (Before 2026-11-29, training users without
examples were left out of the population, which made its size depend on the data.)
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import threading
from typing import Callable, Optional

from absl import logging
import numpy as np

from fl_analytics.data import counter_random
from fl_analytics.data import events
from fl_analytics.data import features
from fl_analytics.data import generators
from fl_analytics.data import synthetic


# Training users whose examples are kept after they are made (least recently used
# first out): every user of a small population, a bounded share of a large one.
CACHE_USERS = 10_000
# Threads that make the next round's users while a round trains (`prefetch`).
PREFETCH_THREADS = 2
# Held-out users made in one pass (bounds the memory of making a large sample).
_BATCH_USERS = 4096


@dataclasses.dataclass(frozen=True)
class LogSource:
  """Where users' logs come from: `logs(us)` are users us's logs (a `LogBatch`), for
  users in [0, num_users), each the same whichever users are asked for with it."""

  num_users: int
  logs: Callable[[np.ndarray], synthetic.LogBatch]
  origin_timestamp: int
  num_days: int
  note: str  # where the logs came from, for the run's log
  # What the logs are, recorded in config.json: `sha256:HEX` of an event file's bytes,
  # or `synthetic:NAME-vN:HEX`, the generator, its version and a hash of its settings.
  fingerprint: str


@dataclasses.dataclass(frozen=True)
class HeldOut:
  """Held-out users' examples, in user order (users without examples left out)."""

  user_ids: tuple[str, ...]
  users: list[tuple[np.ndarray, np.ndarray]]  # per user: x [n, ...], y [n, 1]

  @functools.cached_property
  def x(self) -> np.ndarray:
    return np.concatenate([x for x, _ in self.users])

  @functools.cached_property
  def y(self) -> np.ndarray:
    return np.concatenate([y for _, y in self.users])

  @property
  def sizes(self) -> tuple[int, ...]:
    return tuple(len(y) for _, y in self.users)


class FederatedData:
  """The users of one task (churn or next action), split into training and held out.

  A function of the user index, not a list: user u's log and examples are made from
  `(data config, data.seed, u)` when u is sampled or evaluated (training users' kept
  in a bounded cache, `CACHE_USERS`), so building it generates nobody, and neither the
  time to the first round nor the memory grows with the population beyond an index of
  the users (8 bytes each). The split is of users, not examples: a seeded fraction
  `data.eval_fraction` of the users who did not opt out is held out, never trained on.

  The population that is sampled, and that the accountant uses, is every enrolled
  training user (`population_size`, fixed by the config and the split, not by the
  data): a training user with no example sends a zero update when sampled.
  """

  def __init__(self, source: LogSource, examples_fn: Callable, *, seed: int,
               eval_fraction: float, opt_out: float = 0.0,
               cache_users: int = CACHE_USERS):
    from fl_analytics.data import devices  # pylint: disable=g-import-not-at-top

    self._source = source
    self._examples_fn = examples_fn
    self._seed = seed
    self._cache_users = cache_users
    self._cache: collections.OrderedDict[int, tuple] = collections.OrderedDict()
    self._held_out: dict[tuple[int, int], HeldOut] = {}
    self._prefetching: Optional[tuple[list[threading.Thread], list[dict]]] = None
    opted_out = devices.opted_out(source.num_users, opt_out, seed=seed)
    remaining = np.delete(np.arange(source.num_users), opted_out)
    num_eval = int(round(eval_fraction * len(remaining)))
    if num_eval < 1 or num_eval >= len(remaining):
      raise ValueError(
          f'data.eval_fraction={eval_fraction} of {len(remaining)} users '
          'must leave at least one user on each side of the split.')
    order = np.random.default_rng([seed, 0x5EED, 1]).permutation(len(remaining))
    self._eval = np.sort(remaining[order[:num_eval]])
    self._train = np.sort(remaining[order[num_eval:]])
    self.num_opted_out = len(opted_out)
    self.source_note = source.note
    self.fingerprint = source.fingerprint
    self.users_made = 0  # logs made so far (tests check that nobody is made up front)
    # The shape and dtype of one example: the examples of a user without events.
    [(self.empty_x, self.empty_y)] = self._featurize(synthetic.LogBatch.of(
        [synthetic.UserLog('', np.zeros(0, np.int64), np.zeros(0, np.int32))]))

  @property
  def population_size(self) -> int:
    """Enrolled training users: who can be sampled."""
    return len(self._train)

  @property
  def num_eval_users(self) -> int:
    return len(self._eval)

  @property
  def train_users(self) -> np.ndarray:
    """The source index of each training user, ascending (population index i: the
    i-th of them)."""
    return self._train

  @property
  def eval_users(self) -> np.ndarray:
    """The source index of each held-out user, ascending."""
    return self._eval

  def _featurize(self, batch: synthetic.LogBatch) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x, y[:, None]) for x, y in self._examples_fn(
        batch.timestamps, batch.events, batch.offsets,
        origin_timestamp=self._source.origin_timestamp, num_days=self._source.num_days)]

  def _users(self, us: np.ndarray) -> tuple[tuple[str, ...], list[tuple]]:
    """Users us's ids and `(x, y)`, made now, together (the callers count them in
    `users_made`; this also runs in the prefetch thread)."""
    batch = self._source.logs(np.asarray(us, np.int64))
    return batch.user_ids, self._featurize(batch)

  def train_examples(self, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Training user i's `(x, y)` (`train_examples_many`)."""
    return self.train_examples_many([i])[0]

  def train_examples_many(self, indices) -> list[tuple[np.ndarray, np.ndarray]]:
    """Training users' `(x, y)` (possibly empty), each shuffled once on the device:
    the users neither cached nor prefetched made together, in one pass."""
    indices = [int(i) for i in indices]
    self._cache.update(self._join_prefetch())
    missing = list(dict.fromkeys(i for i in indices if i not in self._cache))
    if missing:
      made, count = self._make_training(missing)
      self.users_made += count
      self._cache.update(made)
    out = []
    for i in indices:
      self._cache.move_to_end(i)
      out.append(self._cache[i])
    while len(self._cache) > self._cache_users:
      self._cache.popitem(last=False)
    return out

  def prefetch(self, indices, *, threads: int = PREFETCH_THREADS) -> None:
    """Starts making training users `indices` in background threads (each a share of
    them), for the next `train_examples_many`, which waits for them: a round's users
    are made while the round before trains. The users are the same either way."""
    self._cache.update(self._join_prefetch())
    missing = list(dict.fromkeys(int(i) for i in indices if int(i) not in self._cache))
    if not missing:
      return
    shares = [part for part in np.array_split(missing, max(1, threads)) if len(part)]
    outcomes = [{} for _ in shares]

    def make(part, outcome):
      try:
        outcome['made'], outcome['count'] = self._make_training(part.tolist())
      except BaseException as e:  # pylint: disable=broad-except
        outcome['error'] = e  # raised where the users are asked for

    workers = [threading.Thread(target=make, args=share, name='prefetch-users', daemon=True)
               for share in zip(shares, outcomes)]
    for worker in workers:
      worker.start()
    self._prefetching = (workers, outcomes)

  def _join_prefetch(self) -> dict:
    if self._prefetching is None:
      return {}
    workers, outcomes = self._prefetching
    self._prefetching = None
    made = {}
    for worker, outcome in zip(workers, outcomes):
      worker.join()
      if 'error' in outcome:
        raise outcome['error']
      self.users_made += outcome['count']
      made.update(outcome['made'])
    return made

  def _make_training(self, missing: list[int]) -> tuple[dict, int]:
    """Training users `missing`, made and shuffled: ({i: (x, y)}, users made)."""
    us = self._train[missing]
    _, made = self._users(us)
    sizes = [len(y) for _, y in made]
    order = counter_random.shuffles(self._seed, us, sizes)
    x = np.concatenate([x for x, _ in made])[order]
    y = np.concatenate([y for _, y in made])[order]
    bounds = np.cumsum([0] + sizes)
    return ({i: (x[a:b], y[a:b]) for i, a, b in zip(missing, bounds[:-1], bounds[1:])},
            len(missing))

  def held_out(self, max_users: int = 0, *, seed: int = 0) -> HeldOut:
    """A fixed sample of at most `max_users` held-out users (0: all), seeded, made now.

    The same for every round and every launch of a run, so per-round metrics follow
    one set of users. Sampled users without examples are left out of it. Kept once
    made (the final evaluation and the audit score the same sample).
    """
    key = (max_users if max_users and max_users < len(self._eval) else 0, seed)
    if key not in self._held_out:
      self._held_out[key] = self._make_held_out(*key)
    return self._held_out[key]

  def _make_held_out(self, max_users: int, seed: int) -> HeldOut:
    chosen = self._eval
    if max_users:
      pick = np.random.default_rng([seed, 0xE7A1]).choice(len(chosen), size=max_users,
                                                          replace=False)
      chosen = chosen[np.sort(pick)]
    ids, users = [], []
    for k in range(0, len(chosen), _BATCH_USERS):
      made_ids, made = self._users(chosen[k:k + _BATCH_USERS])
      self.users_made += len(made)
      for user_id, (x, y) in zip(made_ids, made):
        if len(y):
          ids.append(user_id)
          users.append((x, y))
    if not users:
      raise ValueError(f'None of {len(chosen)} held-out users has an example '
                       f'({self.source_note}).')
    return HeldOut(tuple(ids), users)

  def eval_sample(self, max_users: int, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`held_out(max_users, seed=seed).users`."""
    return self.held_out(max_users, seed=seed).users


def check_data_config(data) -> None:
  synthetic_source = events.source_path(data.source) is None
  generators.of(data)  # a known generator (it also names an event file's vocabulary)
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
  if synthetic_source:
    synthetic.check_knobs(num_users=data.num_users, num_days=data.num_days,
                          quantity_skew=data.quantity_skew, label_skew=data.label_skew,
                          feature_skew=data.feature_skew)
  if synthetic_source and data.num_days < data.window_days + data.horizon_days:
    raise ValueError(
        f'data.num_days={data.num_days} leaves no observation day: it must be at '
        f'least data.window_days + data.horizon_days = '
        f'{data.window_days + data.horizon_days}.')


def load_source(data, *, seed: int) -> LogSource:
  """The users' logs of config `data`.

  Synthetic: `data.num_users` users over `data.num_days` days from
  `synthetic.ORIGIN_TIMESTAMP`, each generated when asked for. From an event file: its
  users (sorted by id), read from its store on disk (`event_store.open_store`, built on
  first use), from midnight (UTC) of its first event's day through its last event's
  day; `data.num_users`, `data.num_days` and the skew knobs do not apply.
  """
  path = events.source_path(data.source)
  generator = generators.of(data)
  if path is None:
    synthetic.check_knobs(num_users=data.num_users, num_days=data.num_days,
                          quantity_skew=data.quantity_skew, label_skew=data.label_skew,
                          feature_skew=data.feature_skew)
    return LogSource(
        num_users=data.num_users,
        logs=functools.partial(generator.generate_users, seed=seed,
                               num_days=data.num_days, quantity_skew=data.quantity_skew,
                               label_skew=data.label_skew, feature_skew=data.feature_skew),
        origin_timestamp=synthetic.ORIGIN_TIMESTAMP, num_days=data.num_days,
        note=(f'synthetic population ({generator.name}) of {data.num_users} users, '
              f'{data.num_days} days'),
        fingerprint=_synthetic_fingerprint(data, seed, generator))
  from fl_analytics.data import event_store  # pylint: disable=g-import-not-at-top

  store = event_store.open_store(path, unknown_events=data.unknown_events,
                                 time_range=(data.min_time, data.max_time),
                                 vocabulary=generator.vocabulary)
  meta = store.meta
  for warning in meta['warnings']:
    logging.warning('%s', warning)
  needed = data.window_days + data.horizon_days
  if store.num_days < needed:
    raise events.EventLogError(
        f'{path}: its events span {store.num_days} days; churn examples need at least '
        f'data.window_days + data.horizon_days = {needed}.')
  dropped = sum(meta['unknown_events'].values())
  note = (f'{path}: {meta["num_rows"]} events of {store.num_users} users over '
          f'{store.num_days} days (store {store.directory})')
  if dropped:
    top = sorted(meta['unknown_events'].items(), key=lambda kv: -kv[1])[:5]
    note += (f'; {dropped} events with names outside the vocabulary dropped ('
             + ', '.join(f'{k!r}: {v}' for k, v in top) + ')')
  return LogSource(num_users=store.num_users, logs=store.logs,
                   origin_timestamp=store.origin_timestamp, num_days=store.num_days,
                   note=note, fingerprint=store.fingerprint)


def _synthetic_fingerprint(data, seed: int, generator: generators.Generator) -> str:
  settings = {'seed': seed, 'num_users': data.num_users, 'num_days': data.num_days,
              'quantity_skew': data.quantity_skew, 'label_skew': data.label_skew,
              'feature_skew': data.feature_skew}
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
  return f'synthetic:{generator.name}-v{generator.version}:{digest[:16]}'


def load_logs(data, *, seed: int) -> tuple[list[synthetic.UserLog], int, int, str]:
  """Every user's log of config `data` (`load_source`), made now: (logs, origin
  timestamp, days, a note). For what reads whole populations (analytics, exports)."""
  source = load_source(data, seed=seed)
  batch = source.logs(np.arange(source.num_users))
  return ([batch.log(k) for k in range(len(batch))], source.origin_timestamp,
          source.num_days, source.note)


def without_opted_out(logs: list[synthetic.UserLog], opt_out: float, *,
                      seed: int) -> tuple[list[synthetic.UserLog], int]:
  """The logs of the users who did not opt out (`devices.opted_out`), and how many did."""
  from fl_analytics.data import devices  # pylint: disable=g-import-not-at-top

  removed = set(devices.opted_out(len(logs), opt_out, seed=seed).tolist())
  return [log for i, log in enumerate(logs) if i not in removed], len(removed)


def build_data(data, *, seed: int, examples_fn: Callable,
               opt_out: float = 0.0) -> FederatedData:
  """The population described by config `data`, split, its users made on demand.

  `examples_fn(timestamps, events, offsets, origin_timestamp=, num_days=)` featurizes
  users' logs (user k's events at `offsets[k]:offsets[k + 1]`) into one `(x, y)` per
  user, with one label per example. A fraction `opt_out` of the users
  (`devices.opted_out`, seeded by `seed`) is removed first: their logs are never
  made, trained on or evaluated.
  """
  check_data_config(data)
  return FederatedData(load_source(data, seed=seed), examples_fn, seed=seed,
                       eval_fraction=data.eval_fraction, opt_out=opt_out)
