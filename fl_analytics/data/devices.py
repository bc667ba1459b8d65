"""Realistic clients: consent, dropout and heterogeneous devices (`clients.*`).

* Consent (`clients.opt_out`): a fraction of the users opted out. They are chosen once
  per population (seeded by `data.seed`), before the split, and removed: never sampled,
  never evaluated, their data never featurized. The population the accountant uses is
  the users left.
* Dropout (`clients.dropout`): every sampled client fails to report, independently,
  with this probability; the round completes with the others (the ones that failed
  send nothing). Drawn per `(seed, round)`, so a resumed run drops the same clients.
  With the SecAgg protocol (`secure_aggregation.sum=protocol`) half of them drop before
  sending their keys and half after sending their shares, and a reporting client drops
  after sending its masked input with chance `secure_aggregation.dropout_after_input`
  (`dropout_stages`).
* Heterogeneous devices (`clients.max_local_steps`): a per-client cap on local steps
  (batches) in each round, drawn per `(seed, round, client)` from
  ``none`` (no cap), ``uniform:LOW:HIGH`` (integers, both included) or
  ``lognormal:MEDIAN:SIGMA`` (rounded, at least 1), the kind of spread of device speeds
  and availability windows of Bonawitz et al. 2019 ("Towards federated learning at
  scale"). A capped client trains on the first batches of its local epochs.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

STEP_DISTRIBUTIONS = ('none', 'uniform:LOW:HIGH', 'lognormal:MEDIAN:SIGMA')


def parse_max_local_steps(spec: str) -> tuple[str, tuple[float, ...]]:
  """`clients.max_local_steps` as (kind, parameters); ValueError naming what is allowed."""
  allowed = (f'clients.max_local_steps must be one of {", ".join(STEP_DISTRIBUTIONS)} '
             '(e.g. uniform:1:20 or lognormal:8:1.0).')
  if not isinstance(spec, str):
    raise ValueError(f'{allowed} Found {spec!r}.')
  kind, *args = spec.strip().split(':')
  try:
    values = tuple(float(a) for a in args)
  except ValueError:
    raise ValueError(f'{allowed} Found {spec!r}.') from None
  if kind == 'none' and not values:
    return kind, values
  if kind == 'uniform' and len(values) == 2:
    low, high = values
    if low == int(low) and high == int(high) and 1 <= low <= high:
      return kind, values
    raise ValueError(f'clients.max_local_steps={spec}: LOW and HIGH must be integers with '
                     '1 <= LOW <= HIGH.')
  if kind == 'lognormal' and len(values) == 2:
    median, sigma = values
    if median >= 1 and sigma >= 0 and math.isfinite(median + sigma):
      return kind, values
    raise ValueError(f'clients.max_local_steps={spec}: MEDIAN must be >= 1 and SIGMA >= 0.')
  raise ValueError(f'{allowed} Found {spec!r}.')


def check_clients_config(clients) -> None:
  """Raises ValueError naming a bad `clients.*` value and what is allowed.

  Whether the mechanism's accounting survives dropout is the mechanism's to say
  (`fl_analytics.privacy.mechanisms.check_dropout`)."""
  for name in ('dropout', 'opt_out'):
    check_fraction(f'clients.{name}', clients[name])
  parse_max_local_steps(clients.max_local_steps)


def check_fraction(key: str, value) -> None:
  """ValueError naming `key` unless `value` is a fraction of users in [0, 1)."""
  if not (isinstance(value, (int, float)) and 0 <= value < 1):
    raise ValueError(f'{key} must be a number in [0, 1). Found {value!r}.')


def opted_out(num_users: int, fraction: float, *, seed: int) -> np.ndarray:
  """Sorted indices of the `round(fraction * num_users)` users who opted out."""
  count = int(round(fraction * num_users))
  order = np.random.default_rng([seed, 0xC0425E47]).permutation(num_users)
  return np.sort(order[:count])


def reporting(cohort: np.ndarray, dropout: float, *, seed: int,
              round_num: int) -> np.ndarray:
  """The clients of `cohort` that report in round `round_num` (each fails w.p. dropout)."""
  if not dropout:
    return cohort
  return cohort[_dropout_draws(len(cohort), seed, round_num) >= dropout]


def _dropout_draws(count: int, seed: int, round_num: int) -> np.ndarray:
  """One uniform draw per sampled client of the round: it drops out below `dropout`."""
  return np.random.default_rng([seed, 0xD409, round_num]).random(count)


def dropout_stages(cohort: np.ndarray, dropout: float, after_input: float, *,
                   seed: int, round_num: int) -> tuple[int, int, np.ndarray]:
  """When the cohort's devices drop out of a SecAgg round: of those that do not report
  (`reporting`'s draw), how many drop before sending their keys and how many after
  sending their shares (half the chance each), and the positions among the reporting
  ones of those that drop after sending their masked input (each w.p. `after_input`;
  their updates are in the sum)."""
  draw = _dropout_draws(len(cohort), seed, round_num) if dropout else np.ones(len(cohort))
  before = int(np.sum(draw < dropout / 2))
  after_shares = int(np.sum(draw < dropout)) - before
  reporting_count = len(cohort) - before - after_shares
  late = (np.random.default_rng([seed, 0xD40A, round_num]).random(reporting_count)
          < after_input) if after_input else np.zeros(reporting_count, bool)
  return before, after_shares, np.flatnonzero(late)


def max_local_steps(cohort: np.ndarray, spec: str, *, seed: int,
                    round_num: int) -> Optional[np.ndarray]:
  """Each client's cap on local steps this round (None: no cap)."""
  kind, params = parse_max_local_steps(spec)
  if kind == 'none':
    return None
  caps = np.empty(len(cohort), np.int64)
  for i, user in enumerate(cohort):
    rng = np.random.default_rng([seed, 0x57E95, round_num, int(user)])
    if kind == 'uniform':
      caps[i] = rng.integers(int(params[0]), int(params[1]) + 1)
    else:
      caps[i] = max(1, int(round(params[0] * math.exp(params[1] * rng.standard_normal()))))
  return caps
