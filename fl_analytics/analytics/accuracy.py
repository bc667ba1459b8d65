"""How accurate each query's release is, against epsilon and the number of users, and
against a central-DP library (PipelineDP) under the same epsilon, delta and bounds.

For nested populations (the first 10^4, 10^5, 10^6 users of one population), each query
is released `repeats` times at each epsilon through TFF (the ``groups`` engine, at most
`MAX_CLIENTS` clients per release) and compared with the true answers:

* `rmse`: root mean squared error of the answers, in their unit (users for counts and
  histogram bins, percentage points for funnel and retention shares);
* `mean_relative_error`: mean |error| / max(|true|, 1) over the answers;
* `rmse_counts`: root mean squared error of the released counts (the vector's entries;
  a histogram's bins): what the ratio to the central library compares;
* `quantile_error`: histograms, mean |error| of the median and 90th percentile;
* heavy hitters: `recall` and `precision` of the true top k.

The repeats are simulation (fresh noise per repeat), not releases: they are not charged
to any budget.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from fl_analytics.analytics import central
from fl_analytics.analytics import gather as gather_lib
from fl_analytics.analytics import heavy_hitters as hh
from fl_analytics.analytics import queries as queries_lib
from fl_analytics.analytics import release as release_lib
from fl_analytics.analytics import trees

ACCURACY_FILE = 'accuracy.csv'
COLUMNS = ('query', 'library', 'users', 'epsilon', 'repeats', 'rmse',
           'mean_relative_error', 'rmse_counts', 'quantile_error', 'recall',
           'precision', 'noise_stddev')
MAX_CLIENTS = 100


def _regroup(clients: np.ndarray, max_clients: int) -> tuple[list[np.ndarray], int]:
  per = -(-len(clients) // max_clients)
  return ([clients[k:k + per].sum(axis=0) for k in range(0, len(clients), per)], per)


def _answer_errors(q, s, sums, truth_sums, stddev, n, pop) -> dict[str, Any]:
  got = q.answers(sums, stddev, n, pop, s)
  true = q.answers(truth_sums, 0.0, n, pop, s)
  # A histogram's quantiles (in the unit of its records) are scored apart.
  quantile = [q.hierarchical and a.unit == s['unit'] for a in true]
  pick = [i for i, is_q in enumerate(quantile) if not is_q]
  # Answers withheld (NaN: a cohort too small to say) are left out.
  err = np.asarray([got[i].value - true[i].value for i in pick])
  rel = np.abs(err) / np.maximum(np.abs([true[i].value for i in pick]), 1.0)
  out = {'rmse': float(np.sqrt(np.nanmean(err**2))),
         'mean_relative_error': float(np.nanmean(rel))}
  if q.hierarchical:
    qs = [i for i, is_q in enumerate(quantile) if is_q]
    out['quantile_error'] = float(np.nanmean([abs(got[i].value - true[i].value)
                                              for i in qs]))
  return out


def _counts_of(q, s, values: np.ndarray) -> np.ndarray:
  """The released counts a ratio compares: the vector, or a tree's consistent leaves."""
  return trees.decode_tree(values, s, ())[0] if q.hierarchical else values


def federated_vector(name: str, s: Mapping, g: gather_lib.Gathered, pop, *, users: int,
                     epsilon: float, delta: float, repeats: int) -> dict[str, Any]:
  q = queries_lib.get(name)
  sums, per = _regroup(g.clients(name, users), MAX_CLIENTS)
  clients = release_lib.tff_values(q, s, np.stack(sums))
  z = release_lib.noise_multiplier_for(epsilon, delta=delta)
  rel = release_lib.run(q, s, clients, epsilon=epsilon, noise_multiplier=z,
                        group_size=per * g.group_size, repeats=repeats)
  truth = g.sums(name, users)
  true_counts = _counts_of(q, s, truth)
  rows = [{**_answer_errors(q, s, v, truth, rel.stddev, users, pop),
           'rmse_counts': float(np.sqrt(np.mean((_counts_of(q, s, v) - true_counts)**2)))}
          for v in rel.values]
  return {**_mean(rows), 'noise_stddev': rel.stddev}


def central_vector(name: str, s: Mapping, g: gather_lib.Gathered, pop, *, users: int,
                   epsilon: float, delta: float, repeats: int) -> dict[str, Any]:
  """PipelineDP on the first `users` users' rows (needs `keep_users`)."""
  q = queries_lib.get(name)
  vectors = g.vectors(name)[:users]
  truth = g.sums(name, users)
  rows = []
  for _ in range(repeats):
    if q.hierarchical:
      leaves = central.vector_counts(trees.leaves_of(vectors, s), epsilon=epsilon,
                                     delta=delta, l0=s['num_bins'],
                                     max_contributions=s.get('max_records', 1))
      true_leaves = trees.leaves_of(truth, s)
      tree = np.concatenate(trees.tree_layers(leaves, s['arity']))
      rows.append({**_answer_errors(q, s, tree, truth, 0.0, users, pop),
                   'rmse_counts': float(np.sqrt(np.mean((leaves - true_leaves)**2)))})
    else:
      l0 = round(q.sensitivity(s) ** 2)
      sums = central.vector_counts(vectors, epsilon=epsilon, delta=delta, l0=l0)
      rows.append({**_answer_errors(q, s, sums, truth, 0.0, users, pop),
                   'rmse_counts': float(np.sqrt(np.mean((sums - truth)**2)))})
  return _mean(rows)


def _mean(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
  return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def heavy_hitter_rows(s, g: gather_lib.Gathered, *, sizes, epsilons, delta, repeats,
                      central_max_users: int, rng) -> list[dict[str, Any]]:
  """Recall and precision of the top k, federated (IBLT decoded from the groups'
  sketches) and central (PipelineDP, up to `central_max_users`)."""
  out = []
  for n in sizes:
    truth = g.paths(n)
    decoded, _ = hh.decode_groups(g.group_paths[:g.path_groups(n)], s)
    for eps in epsilons:
      fed = [hh.top_k_metrics(hh.release(decoded, s, epsilon=eps, delta=delta,
                                         rng=rng).released, truth, s['top_k'])
             for _ in range(repeats)]
      out.append(_hh_row('fl_analytics', n, eps, repeats, fed))
      if n <= central_max_users and g.user_paths:
        cen = [hh.top_k_metrics(central.path_counts(g.user_paths[:n], epsilon=eps,
                                                    delta=delta,
                                                    max_strings=s['max_strings']),
                                truth, s['top_k']) for _ in range(repeats)]
        out.append(_hh_row('pipeline_dp', n, eps, repeats, cen))
  return out


def _hh_row(library, n, eps, repeats, metrics) -> dict[str, Any]:
  return {'query': hh.NAME, 'library': library, 'users': n, 'epsilon': eps,
          'repeats': repeats, **{k: float(np.mean([m[k] for m in metrics]))
                                 for k in ('recall', 'precision')}}


def study(g: gather_lib.Gathered, specs: Mapping[str, Mapping], pop, *,
          sizes: Sequence[int], epsilons: Sequence[float], delta: float, repeats: int,
          central_max_users: int, central_repeats: int, rng: np.random.Generator,
          progress: Optional[Callable[[str], None]] = None) -> list[dict[str, Any]]:
  """Every (query, library, users, epsilon) row of accuracy.csv."""
  rows = []
  for name, s in specs.items():
    if name == hh.NAME:
      rows += heavy_hitter_rows(s, g, sizes=sizes, epsilons=epsilons, delta=delta,
                                repeats=repeats, central_max_users=central_max_users,
                                rng=rng)
      continue
    for n in sizes:
      for eps in epsilons:
        kw = dict(users=n, epsilon=eps, delta=delta)
        rows.append({'query': name, 'library': 'fl_analytics', 'users': n,
                     'epsilon': eps, 'repeats': repeats,
                     **federated_vector(name, s, g, pop, repeats=repeats, **kw)})
        if n <= central_max_users and name in g.user_vectors:
          rows.append({'query': name, 'library': 'pipeline_dp', 'users': n,
                       'epsilon': eps, 'repeats': central_repeats,
                       **central_vector(name, s, g, pop, repeats=central_repeats,
                                        **kw)})
    if progress is not None:
      progress(name)
  return rows


def ratios(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """Per (query, users, epsilon): federated rmse_counts / PipelineDP's."""
  central_of = {(r['query'], r['users'], r['epsilon']): r for r in rows
                if r['library'] == 'pipeline_dp' and r.get('rmse_counts') is not None}
  out = []
  for r in rows:
    c = central_of.get((r['query'], r['users'], r['epsilon']))
    if r['library'] == 'fl_analytics' and c and c['rmse_counts'] > 0:
      out.append({'query': r['query'], 'users': r['users'], 'epsilon': r['epsilon'],
                  'ratio': r['rmse_counts'] / c['rmse_counts']})
  return out


def recall_epsilon(rows, *, users: int, target: float = 0.9) -> Optional[float]:
  """The smallest epsilon of the sweep at which federated top-k recall reaches
  `target` at `users` users (None if none does)."""
  eps = sorted(r['epsilon'] for r in rows if r['query'] == hh.NAME
               and r['library'] == 'fl_analytics' and r['users'] == users
               and r['recall'] >= target)
  return eps[0] if eps else None


def fill(rows):
  """Rows with every column (blank where it does not apply)."""
  return [{c: r.get(c, '') for c in COLUMNS} for r in rows]

