"""The federated churn dataset: training users (the clients) and held-out users.

`build_churn_data` generates the synthetic population, featurizes each user's log on
its own (as a device would), and splits the users, not the examples: a held-out
fraction of users is never trained on and serves for evaluation, so every example
belongs to exactly one user on one side of the split.

Training users with no example (never active in an observation window) are left out of
the population that is sampled; `population_size` is the number of users that can be
sampled, and it is what the privacy accountant uses.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fl_analytics.data import features
from fl_analytics.data import synthetic


@dataclasses.dataclass(frozen=True)
class ChurnData:
  train_user_ids: list[str]
  train_examples: list[tuple[np.ndarray, np.ndarray]]  # per user: x [n, F], y [n, 1]
  eval_x: np.ndarray
  eval_y: np.ndarray  # [n, 1]
  num_eval_users: int
  num_users_without_examples: int

  @property
  def population_size(self) -> int:
    return len(self.train_user_ids)

  @property
  def eval_base_rate(self) -> float:
    return float(self.eval_y.mean()) if len(self.eval_y) else float('nan')


def check_data_config(data) -> None:
  if not 0 < data.eval_fraction < 1:
    raise ValueError(f'data.eval_fraction must be in (0, 1). Found {data.eval_fraction}.')
  features.check_window(
      window_days=data.window_days,
      horizon_days=data.horizon_days,
      stride_days=data.stride_days,
  )
  if data.num_days < data.window_days + data.horizon_days:
    raise ValueError(
        f'data.num_days={data.num_days} leaves no observation day: it must be at '
        f'least data.window_days + data.horizon_days = '
        f'{data.window_days + data.horizon_days}.')


def build_churn_data(data, *, seed: int) -> ChurnData:
  """Generates, featurizes and splits the population described by config `data`."""
  check_data_config(data)
  logs = synthetic.generate_population(
      num_users=data.num_users,
      seed=seed,
      num_days=data.num_days,
      quantity_skew=data.quantity_skew,
      label_skew=data.label_skew,
      feature_skew=data.feature_skew,
  )
  num_eval = int(round(data.eval_fraction * data.num_users))
  if num_eval < 1 or num_eval >= data.num_users:
    raise ValueError(
        f'data.eval_fraction={data.eval_fraction} of data.num_users={data.num_users} '
        'must leave at least one user on each side of the split.')
  order = np.random.default_rng([seed, 0x5EED, 1]).permutation(data.num_users)
  eval_set = set(order[:num_eval].tolist())

  train_ids, train_examples, eval_parts = [], [], []
  without = 0
  for index, log in enumerate(logs):
    x, y = features.churn_examples(
        log.timestamps,
        log.events,
        origin_timestamp=synthetic.ORIGIN_TIMESTAMP,
        num_days=data.num_days,
        window_days=data.window_days,
        horizon_days=data.horizon_days,
        stride_days=data.stride_days,
    )
    y = y[:, None]
    if index in eval_set:
      eval_parts.append((x, y))
    elif len(y) == 0:
      without += 1
    else:
      # Shuffle on the device, once: examples of a user are in time order otherwise.
      perm = np.random.default_rng([seed, index, 2]).permutation(len(y))
      train_ids.append(log.user_id)
      train_examples.append((x[perm], y[perm]))
  if not train_ids:
    raise ValueError(
        f'No training user has a churn example (data.num_users={data.num_users}).')
  return ChurnData(
      train_user_ids=train_ids,
      train_examples=train_examples,
      eval_x=np.concatenate([x for x, _ in eval_parts]),
      eval_y=np.concatenate([y for _, y in eval_parts]),
      num_eval_users=num_eval,
      num_users_without_examples=without,
  )
