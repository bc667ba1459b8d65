"""An analytics session: several queries released under one user-level budget.

Each query of the session is one release at its own epsilon (config
`analytics.epsilon.NAME`), all at the session's delta; the ledger
(`privacy.ledger`, `ledger.json` in the run directory) composes them with dp_accounting
and refuses, before anything runs, a session whose releases would take it past the
budget. `analytics.csv` holds every released number with the stddev of its noise (a
95 % interval from it) and, in simulation, the true value and the error.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from fl_analytics.analytics import gather as gather_lib
from fl_analytics.analytics import heavy_hitters as hh
from fl_analytics.analytics import queries as queries_lib
from fl_analytics.analytics import release as release_lib
from fl_analytics.core import rundir
from fl_analytics.privacy import ledger as ledger_lib
from fl_analytics.privacy import statement

RESULTS_FILE = 'analytics.csv'
PRIVACY_FILE = rundir.PRIVACY_FILE
RESULT_COLUMNS = ('query', 'item', 'value', 'stddev', 'ci_low', 'ci_high', 'unit',
                  'epsilon', 'true_value', 'error')
Z95 = 1.959964
ALL_QUERIES = (*queries_lib.REGISTRY, hh.NAME)
NOT_COVERED = (
    {'output': 'analytics.csv: true_value and error',
     'why': 'the exact answers, kept in simulation to measure the error of the '
            'releases; publishing them releases the data without noise'},
    {'output': 'the decoded IBLT and the sums before noise',
     'why': 'the secure sum hands the server the exact sum (here TFF simulates it); '
            'the DP guarantee is of the releases'},)


def query_names(spec: str) -> list[str]:
  """'funnel,retention' -> the names; raises ValueError naming an unknown one."""
  names = [n.strip() for n in str(spec).split(',') if n.strip()]
  unknown = [n for n in names if n not in ALL_QUERIES]
  if not names or unknown:
    raise ValueError(f'analytics.queries must list queries among '
                     f'{", ".join(ALL_QUERIES)} (comma-separated). Found {spec!r}.')
  return names


def specs_of(analytics, names: Sequence[str], pop: queries_lib.Population
             ) -> dict[str, dict[str, Any]]:
  """Each query's settings (its defaults with `analytics.settings.NAME`), checked."""
  out = {}
  for name in names:
    overrides = dict(analytics.settings.get(name, {}) or {})
    if name == hh.NAME:
      unknown = sorted(set(overrides) - set(hh.DEFAULTS))
      if unknown:
        raise ValueError(f'analytics.settings.{name}: unknown setting(s) {unknown}; '
                         f'its settings are {", ".join(hh.DEFAULTS)}.')
      out[name] = {**hh.DEFAULTS, **overrides}
      continue
    q = queries_lib.get(name)
    out[name] = queries_lib.settings_of(q, overrides)
    queries_lib.check_settings(q, out[name], pop)
  return out


def epsilon_of(analytics, name: str) -> float:
  eps = analytics.epsilon.get(name)
  if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
    raise ValueError(f'analytics.epsilon.{name} must be a finite number > 0. Found '
                     f'{eps!r}.')
  return float(eps)


def ledger_entries(analytics, names: Sequence[str]) -> list[ledger_lib.Entry]:
  """What each query's release spends (heavy hitters: also its threshold's delta)."""
  delta, out = analytics.delta, []
  for name in names:
    eps = epsilon_of(analytics, name)
    if name == hh.NAME:
      delta_g, delta_t = hh.split_delta(delta)
      out.append(ledger_lib.Entry(f'{name} epsilon={eps:g}',
                                  release_lib.noise_multiplier_for(eps, delta=delta_g),
                                  extra_delta=delta_t))
    else:
      out.append(ledger_lib.Entry(f'{name} epsilon={eps:g}',
                                  release_lib.noise_multiplier_for(eps, delta=delta)))
  return out


@dataclasses.dataclass(frozen=True)
class QueryResult:
  name: str
  epsilon: float
  noise_multiplier: float
  noise_stddev: float
  rows: list[dict[str, Any]]
  extra: dict[str, Any]


def release_vector_query(name: str, s: Mapping, g: gather_lib.Gathered,
                         pop: queries_lib.Population, *, epsilon: float, delta: float,
                         engine: str) -> QueryResult:
  """One DP release of a vector query, through TFF; rows for analytics.csv."""
  q = queries_lib.get(name)
  z = release_lib.noise_multiplier_for(epsilon, delta=delta)
  if engine == 'users':
    clients = release_lib.client_values(q, s, g.vectors(name), group_size=1)
    group = 1
  else:
    clients, group = release_lib.tff_values(q, s, g.clients(name)), g.group_size
  rel = release_lib.run(q, s, clients, epsilon=epsilon, noise_multiplier=z,
                        group_size=group)
  got = q.answers(rel.values[0], rel.stddev, g.num_users, pop, s)
  truth = q.answers(g.sums(name), 0.0, g.num_users, pop, s)
  rows = [_row(name, a, epsilon, t.value) for a, t in zip(got, truth)]
  return QueryResult(name, epsilon, z, rel.stddev, rows,
                     {'sensitivity': rel.sensitivity, 'bound': q.bound})


def release_heavy_hitters(s: Mapping, g: gather_lib.Gathered, *, epsilon: float,
                          delta: float, engine: str,
                          rng: np.random.Generator) -> QueryResult:
  if engine == 'users':
    decoded, not_decoded = hh.decode_users(g.user_paths, s)
  else:
    decoded, not_decoded = hh.decode_groups(g.group_paths, s)
  rel = hh.release(decoded, s, epsilon=epsilon, delta=delta, rng=rng)
  truth = g.paths()
  rows = [_row(hh.NAME, queries_lib.Answer(x, v, rel.noise_stddev, 'users'), epsilon,
               truth.get(x, 0))
          for x, v in sorted(rel.released.items(), key=lambda kv: -kv[1])]
  metrics = hh.top_k_metrics(rel.released, truth, s['top_k'])
  return QueryResult(hh.NAME, epsilon, rel.noise_multiplier, rel.noise_stddev, rows,
                     {'threshold': rel.threshold, 'not_decoded': not_decoded,
                      'decoded': len(decoded), 'bound': hh.BOUND,
                      'sensitivity': math.sqrt(s['max_strings']),
                      f'top_{s["top_k"]}': metrics})


def _row(name, a: queries_lib.Answer, epsilon, true_value) -> dict[str, Any]:
  half = Z95 * a.stddev if math.isfinite(a.stddev) else math.nan
  return {'query': name, 'item': a.item, 'value': a.value, 'stddev': a.stddev,
          'ci_low': a.value - half, 'ci_high': a.value + half, 'unit': a.unit,
          'epsilon': epsilon, 'true_value': float(true_value),
          'error': a.value - float(true_value)}


def write(workdir: str, results: Sequence[QueryResult], *, delta: float,
          num_users: int, ledger: ledger_lib.Ledger, engine: str,
          specs: Mapping[str, Mapping]) -> None:
  """analytics.csv and privacy.json (with the ledger) of the session."""
  rundir.write_csv(os.path.join(workdir, RESULTS_FILE), RESULT_COLUMNS,
                   [r for res in results for r in res.rows])
  rundir.write_json(os.path.join(workdir, PRIVACY_FILE), {
      **statement.guarantee_fields(
          private=True, epsilon=ledger.spent, delta=delta,
          mechanism=('one Gaussian release per query (TFF DifferentiallyPrivateFactory '
                     'with TF Privacy GaussianSumQuery or TreeRangeSumQuery over '
                     'SecureSumFactory; heavy hitters: TFF IBLT, Gaussian '
                     'thresholding), each calibrated by dp_accounting PLD'),
          accountant=f'{ledger.accountant} (dp_accounting): the composition of the '
                     'session\'s releases (ledger)',
          neighboring_relation='add or remove one user', population_size=num_users,
          caveats=(), not_covered=NOT_COVERED),
      'engine': engine,
      'secure_aggregation': ("TFF's secure sums (SecureSumFactory, IBLT secure "
                             "modular sum); TFF's local runtime simulates them"),
      'queries': [{'query': r.name, 'epsilon': r.epsilon,
                   'noise_multiplier': r.noise_multiplier,
                   'noise_stddev': r.noise_stddev, 'settings': dict(specs[r.name]),
                   **r.extra} for r in results],
      'ledger': ledger.to_json(),
  })
