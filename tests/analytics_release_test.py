"""DP releases of the analytics queries through TFF: the engines, the noise, the IBLT."""

import collections

import numpy as np
import pytest

from fl_analytics.analytics import heavy_hitters as hh
from fl_analytics.analytics import queries
from fl_analytics.analytics import release
from fl_analytics.analytics import trees
from fl_analytics.data import app_paths
from fl_analytics.data import synthetic

POP = queries.Population(app_paths.VOCABULARY, synthetic.ORIGIN_TIMESTAMP, 60)
pytestmark = pytest.mark.cpp  # TFF's C++ local runtime


def _batch(n=40):
  return app_paths.generate_users(np.arange(n), seed=2, num_days=60, quantity_skew=1.0,
                                  label_skew=1.0, feature_skew=1.0)


def test_both_engines_release_the_exact_sum_without_noise():
  batch = _batch()
  for name, q in sorted(queries.REGISTRY.items()):
    s = queries.settings_of(q, {})
    v = q.contributions(batch, POP, s)
    # One TFF client per user: a count query and a histogram (TFF's own factory).
    for group in ((1, 16) if name in ('funnel', 'sessions_per_day') else (16,)):
      clients = release.client_values(q, s, v, group_size=group)
      got = release.run(q, s, clients, epsilon=0, noise_multiplier=0.0, group_size=group)
      np.testing.assert_allclose(got.values[0], v.sum(axis=0), atol=1e-3,
                                 err_msg=f'{name}, groups of {group}')


def test_the_noise_has_the_stated_stddev():
  q = queries.REGISTRY['sessions_per_day']  # a tree: every node gets the noise
  s = queries.settings_of(q, {})
  v = q.contributions(_batch(20), POP, s)
  clients = release.client_values(q, s, v, group_size=10)
  got = release.run(q, s, clients, epsilon=1.0, noise_multiplier=0.7, group_size=10,
                    repeats=60)
  noise = got.values - v.sum(axis=0)
  assert got.stddev == pytest.approx(0.7 * q.sensitivity(s))
  # 60 * dim draws: the sample stddev is within 4 of its standard errors.
  rel = 4 / np.sqrt(2 * noise.size)
  assert abs(noise.std() / got.stddev - 1) < rel, (noise.std(), got.stddev)


def test_the_consistent_leaves_have_the_stated_stddev():
  s = queries.settings_of(queries.REGISTRY['sessions_per_day'], {})
  rng = np.random.default_rng(1)
  nodes = sum(len(x) for x in trees.tree_layers(np.zeros(s['num_bins']), s['arity']))
  leaves = np.stack([trees.decode_tree(rng.normal(0, 2.0, nodes), s, ())[0]
                     for _ in range(300)])
  stated = trees.leaf_stddev(2.0, s)
  assert stated < 2.0  # every level informs a leaf
  assert abs(leaves.std(axis=0).max() / stated - 1) < 0.15


def _groups(per_user, size):
  return [collections.Counter(x for u in per_user[k:k + size] for x in u)
          for k in range(0, len(per_user), size)]


def test_heavy_hitters_recover_planted_strings_and_the_engines_agree():
  s = dict(hh.DEFAULTS, capacity=200)
  batch = _batch(30)
  users, codes = hh.path_codes(batch, POP, s)
  names = hh.code_strings(codes, POP, s)
  per_user = [[] for _ in range(len(batch))]
  for u, x in zip(users, names):
    per_user[u].append(x)
  planted = {'planted>new_word': 25, 'planted>other': 15}
  per_user += [[x for x, n in planted.items() if i < n] for i in range(25)]
  truth = collections.Counter(x for u in per_user for x in u)
  by_users, _ = hh.decode_users(per_user, s)
  by_groups, _ = hh.decode_groups(_groups(per_user, 8), s)
  assert by_users == by_groups == dict(truth)
  got = hh.release(by_groups, s, epsilon=20.0, delta=1e-6, rng=np.random.default_rng(0))
  for x, n in planted.items():
    assert abs(got.released[x] - n) < 5 * got.noise_stddev
  assert got.threshold > 1 + 3 * got.noise_stddev  # a string of one user stays hidden
  assert all(truth[x] > 1 for x in got.released)
