"""DP feature-usage analytics: how many users used each feature, without collecting logs.

Each user's device computes one vector over the event vocabulary: 1 for every feature
(event type) it used at least once in the last `window_days` days of the data, else 0.
The server learns only the DP sum of these vectors, aggregated by TFF: a
`tff.aggregators.DifferentiallyPrivateFactory` around TF Privacy's `GaussianSumQuery`
(each user's vector clipped to L2 norm sqrt(K), its largest possible norm for K
features, so the clip never binds and one user moves the sum by at most sqrt(K)),
optionally over `tff.aggregators.SecureSumFactory` (bounds [0, 1], in which 0 and 1 are
exact) so that the server sees the sum only in aggregate; TFF's local runtime simulates
the secure sum.

The unit of privacy is one user's whole data (add or remove one user). Every user takes
part once, so one release is one Gaussian mechanism; its noise multiplier z for
(epsilon, delta) comes from dp_accounting's PLD accountant (`statement.calibrate_noise_multiplier`
with the whole population in one round), and the noise on each count has stddev
z * sqrt(K). Each epsilon of a sweep is an alternative release: publishing several
spends their composition.

In simulation the true counts are known, so `run` measures the error of every release,
`repeats` times per epsilon (fresh noise each time).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Optional, Sequence

import numpy as np

from fl_analytics.privacy import statement
from fl_analytics.core import rundir
from fl_analytics.data import synthetic

RESULTS_FILE = 'analytics.csv'
SUMMARY_FILE = 'analytics_summary.csv'
PRIVACY_FILE = rundir.PRIVACY_FILE
# What analytics.csv holds beside the releases that no guarantee covers.
ANALYTICS_NOT_COVERED = (
    {'output': 'analytics.csv: true_value (and error, computed from it)',
     'why': 'the exact counts, kept in simulation to measure the error of the releases; '
            'publishing them releases the counts without noise'},)
RESULT_COLUMNS = ('epsilon', 'repeat', 'feature', 'true_value', 'dp_value', 'error')
SUMMARY_COLUMNS = ('epsilon', 'delta', 'noise_multiplier', 'noise_stddev', 'repeats',
                   'rmse', 'mean_abs_error', 'mean_relative_error')


def usage_vectors(logs: Sequence[synthetic.UserLog], *, end_timestamp: int,
                  window_days: int, vocabulary: Sequence[str]) -> np.ndarray:
  """[users, K] 0/1: whether each user used each feature (action of `vocabulary`) in
  the window before the end."""
  start = end_timestamp - window_days * synthetic.SECONDS_PER_DAY
  out = np.zeros((len(logs), len(vocabulary)), np.float32)
  for i, log in enumerate(logs):
    recent = log.events[(log.timestamps >= start) & (log.timestamps < end_timestamp)]
    out[i, np.unique(recent)] = 1.0
  return out


def check_analytics_config(analytics, *, num_users: int) -> None:
  """Raises ValueError naming a bad `analytics.*` value and what is allowed."""
  if num_users < 1:
    raise ValueError('No user is left to count: every user opted out (clients.opt_out) '
                     'or the data has none.')
  eps = list(analytics.epsilons)
  if not eps or not all(isinstance(e, (int, float)) and 0 < e and math.isfinite(e)
                        for e in eps):
    raise ValueError(f'analytics.epsilons must be a non-empty list of finite numbers > 0. '
                     f'Found {eps!r}.')
  if not 0 < analytics.delta < 1 / num_users:
    raise ValueError(f'analytics.delta={analytics.delta:g} must be in (0, 1 / number of '
                     f'users = {1 / num_users:.3g}).')
  budget = analytics.get('budget_epsilon')
  if budget is not None and not (isinstance(budget, (int, float)) and 0 < budget
                                 and math.isfinite(budget)):
    raise ValueError(f'analytics.budget_epsilon must be a finite number > 0 (unset: no '
                     f'budget). Found {budget!r}.')
  for key in ('window_days', 'repeats'):
    value = analytics[key]
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'analytics.{key} must be a positive integer. Found {value!r}.')


def noise_multiplier_for(epsilon: float, *, delta: float, num_users: int) -> float:
  """The Gaussian noise multiplier of one (epsilon, delta) release (PLD accountant)."""
  return statement.calibrate_noise_multiplier(
      target_epsilon=epsilon, clients_per_round=num_users, population_size=num_users,
      rounds=1, delta=delta, sampling='poisson', accountant='pld')


def build_process(*, noise_multiplier: float, num_features: int, secure_sum: bool):
  """TFF's DP sum of the users' 0/1 vectors (an `AggregationProcess`)."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  import tensorflow_privacy as tfp  # pylint: disable=g-import-not-at-top

  clip = math.sqrt(num_features)
  query = tfp.GaussianSumQuery(l2_norm_clip=clip, stddev=noise_multiplier * clip)
  inner = (tff.aggregators.SecureSumFactory(upper_bound_threshold=1.0,
                                            lower_bound_threshold=0.0)
           if secure_sum else None)
  factory = tff.aggregators.DifferentiallyPrivateFactory(query, inner)
  return factory.create(tff.TensorType(np.float32, [num_features]))


@dataclasses.dataclass(frozen=True)
class Release:
  epsilon: float
  noise_multiplier: float
  values: np.ndarray  # [repeats, K]


def run(vectors: np.ndarray, *, epsilons: Sequence[float], delta: float, repeats: int,
        secure_sum: bool, progress=None) -> list[Release]:
  """`repeats` DP releases of the column sums of `vectors` at each epsilon."""
  from fl_analytics.core import runtime  # pylint: disable=g-import-not-at-top

  num_users, num_features = vectors.shape
  clients = [v for v in vectors]
  releases = []
  with runtime.local_cpp_context():
    for epsilon in epsilons:
      z = noise_multiplier_for(epsilon, delta=delta, num_users=num_users)
      process = build_process(noise_multiplier=z, num_features=num_features,
                              secure_sum=secure_sum)
      state = process.initialize()
      values = []
      for r in range(repeats):
        output = process.next(state, clients)
        state = output.state
        values.append(np.asarray(output.result, np.float64))
        if progress is not None:
          progress(epsilon, r + 1)
      releases.append(Release(epsilon, z, np.stack(values)))
  return releases


def write_results(workdir: str, true_counts: np.ndarray, releases: Sequence[Release], *,
                  delta: float, num_users: int, secure_sum: bool, window_days: int,
                  vocabulary: Sequence[str], ledger: Optional[dict] = None
                  ) -> list[dict[str, Any]]:
  """analytics.csv, analytics_summary.csv and privacy.json (with the session's
  `ledger`, `privacy.ledger.Ledger.to_json`, if it has a budget); returns the summary
  rows."""
  k = len(true_counts)
  rows, summary = [], []
  for rel in releases:
    errors = rel.values - true_counts[None, :]
    for r, values in enumerate(rel.values):
      for f, name in enumerate(vocabulary):
        rows.append({'epsilon': rel.epsilon, 'repeat': r, 'feature': name,
                     'true_value': float(true_counts[f]), 'dp_value': float(values[f]),
                     'error': float(values[f] - true_counts[f])})
    summary.append({
        'epsilon': rel.epsilon, 'delta': delta, 'noise_multiplier': rel.noise_multiplier,
        'noise_stddev': rel.noise_multiplier * math.sqrt(k), 'repeats': len(rel.values),
        'rmse': float(np.sqrt(np.mean(errors**2))),
        'mean_abs_error': float(np.mean(np.abs(errors))),
        'mean_relative_error': float(np.mean(np.abs(errors) / np.maximum(true_counts, 1))),
    })
  rundir.write_csv(os.path.join(workdir, RESULTS_FILE), RESULT_COLUMNS, rows)
  rundir.write_csv(os.path.join(workdir, SUMMARY_FILE), SUMMARY_COLUMNS, summary)
  rundir.write_json(os.path.join(workdir, PRIVACY_FILE), {
      # One epsilon per release (see releases), so none at the top.
      **statement.guarantee_fields(
          private=True, epsilon=None, delta=delta,
          mechanism=('Gaussian sum (TFF DifferentiallyPrivateFactory with TF Privacy '
                     f'GaussianSumQuery), L2 sensitivity sqrt({k}), noise stddev '
                     'noise_multiplier * sqrt(K) on every count'),
          accountant='pld (dp_accounting), one Gaussian mechanism per release',
          neighboring_relation='add or remove one user', population_size=num_users,
          # Every user takes part and the noise is TF Privacy's, unseeded.
          caveats=(), not_covered=ANALYTICS_NOT_COVERED),
      'query': (f'for each of the {k} features, the number of users who used it at '
                f'least once in the last {window_days} days (one 0/1 vector per user)'),
      'secure_aggregation': (
          "TFF SecureSumFactory; TFF's local runtime simulates the secure sum, so no "
          'cryptography ran here' if secure_sum else 'none (the server sees each vector)'),
      'window_days': window_days,
      'releases': [{'epsilon': s['epsilon'], 'noise_multiplier': s['noise_multiplier'],
                    'noise_stddev': s['noise_stddev']} for s in summary],
      'notes': ('Each epsilon is an alternative release of the same counts; publishing '
                'several spends their composition. Repeats are simulation only: they '
                'measure the error distribution of one release.'),
      **({'ledger': ledger} if ledger else {}),
  })
  return summary
