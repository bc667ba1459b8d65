"""DP releases of a query's sum through TFF's aggregators, and their noise.

Every user takes part once, so a release is one Gaussian mechanism over the users'
bounded vectors (`queries`): noise of stddev z * sensitivity on every entry of the sum,
z calibrated for (epsilon, delta) by dp_accounting's PLD accountant
(`noise_multiplier_for`). The sum runs through TFF:

* counts (feature usage, funnel, retention): `tff.aggregators.DifferentiallyPrivateFactory`
  with TF Privacy's `GaussianSumQuery` over `tff.aggregators.SecureSumFactory`;
* hierarchical histograms (session length, sessions per day): TFF's
  `create_hierarchical_histogram_aggregation_factory` (central Gaussian, sub-sampling
  clip, secure sum: `tff.analytics.hierarchical_histogram`), whose tree is TF Privacy's
  `TreeRangeSumQuery`; read back with TFF's `HierarchicalHistogramDecoder`
  (least-squares consistency, Cormode, Kulkarni and Srivastava 2019).

Two engines (`ENGINES`) give the same release:

* ``users``: each user is one TFF client, clipped to the sensitivity (which never
  binds: the device already bounded its vector);
* ``groups``: users are summed in groups on the way in (what the secure sum adds up
  anyway) and each group is one TFF client, with the same noise stddev and a clip that
  cannot bind (the group's size times the sensitivity). For 10^5 and more users, where
  a TFF client per user would take minutes per release.

`tests/analytics_release_test.py` checks that the engines agree without noise and that
the noise has the stated stddev.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Mapping, Sequence

import numpy as np

from fl_analytics.analytics import queries as queries_lib
from fl_analytics.analytics import trees
from fl_analytics.privacy import statement

ENGINES = ('users', 'groups')


@functools.lru_cache(maxsize=None)
def noise_multiplier_for(epsilon: float, *, delta: float) -> float:
  """z of one Gaussian mechanism that is (epsilon, delta)-DP (PLD accountant; cached:
  the ledger, the release and every repeat of the accuracy study ask for the same)."""
  return statement.calibrate_noise_multiplier(
      target_epsilon=epsilon, clients_per_round=1, population_size=1, rounds=1,
      delta=delta, sampling='poisson', accountant='pld')


def _factory(query: queries_lib.Query, s: Mapping, *, noise_multiplier: float,
             group_size: int):
  """TFF's DP aggregation factory of `query` for clients summing `group_size` users
  (1: one user per client, TFF's own construction)."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  import tensorflow_privacy as tfp  # pylint: disable=g-import-not-at-top

  sens = query.sensitivity(s)
  if query.hierarchical and group_size == 1:
    from tensorflow_federated.python.analytics.hierarchical_histogram import (  # pylint: disable=g-import-not-at-top
        hierarchical_histogram_factory as hhf)
    return hhf.create_hierarchical_histogram_aggregation_factory(
        num_bins=s['num_bins'], arity=s['arity'], clip_mechanism='sub-sampling',
        max_records_per_user=s.get('max_records', 1), dp_mechanism='central-gaussian',
        noise_multiplier=noise_multiplier, enable_secure_sum=True)
  clip = sens * group_size  # a sum of group_size vectors of norm <= sens
  upper = float(s.get('max_records', 1) * group_size)  # the largest entry of a sum
  if query.hierarchical:
    dp_query = tfp.TreeRangeSumQuery.build_central_gaussian_query(
        clip, noise_multiplier * sens, s['arity'])
  else:
    dp_query = tfp.GaussianSumQuery(l2_norm_clip=clip, stddev=noise_multiplier * sens)
  return tff.aggregators.DifferentiallyPrivateFactory(
      dp_query, tff.aggregators.SecureSumFactory(upper_bound_threshold=upper,
                                                 lower_bound_threshold=0.0))


def client_values(query: queries_lib.Query, s: Mapping, vectors: np.ndarray, *,
                  group_size: int) -> list[np.ndarray]:
  """What each TFF client sends: one user's vector (or leaf histogram), or a group's
  sum of them."""
  if group_size > 1:
    vectors = np.stack([vectors[k:k + group_size].sum(axis=0)
                        for k in range(0, len(vectors), group_size)])
  return tff_values(query, s, vectors)


def tff_values(query: queries_lib.Query, s: Mapping, sums: np.ndarray) -> list[np.ndarray]:
  """What TFF's factory takes of each client's vector (or sum of vectors): the vector,
  or a tree's leaves (TFF builds the tree itself)."""
  return list(trees.leaves_of(sums, s) if query.hierarchical else sums)


def _flat(result) -> np.ndarray:
  """A TFF result (a tensor, or a ragged tree as a tensor or its parts) as a vector."""
  if hasattr(result, 'flat_values'):
    return np.asarray(result.flat_values, np.float64)
  if isinstance(result, Mapping):
    return np.asarray(result['flat_values'], np.float64)
  return np.asarray(result, np.float64)


@dataclasses.dataclass(frozen=True)
class Release:
  query: str
  epsilon: float
  noise_multiplier: float
  sensitivity: float
  values: np.ndarray  # [repeats, dim]: DP sums, one row per release
  stddev: float  # of the noise on every entry of the sum


def run(query: queries_lib.Query, s: Mapping, clients: Sequence[np.ndarray], *,
        epsilon: float, noise_multiplier: float, group_size: int,
        repeats: int = 1) -> Release:
  """`repeats` DP releases of the sum of `clients` (`client_values`) with noise
  multiplier z (`noise_multiplier_for(epsilon)`), through TFF's local runtime."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  from fl_analytics.core import runtime  # pylint: disable=g-import-not-at-top

  z = noise_multiplier
  factory = _factory(query, s, noise_multiplier=z, group_size=group_size)
  # TFF's hierarchical histogram factory takes int32 leaves; the others float32.
  dtype = np.int32 if (query.hierarchical and group_size == 1) else np.float32
  clients = [np.asarray(c, dtype) for c in clients]
  spec = tff.TensorType(clients[0].dtype, clients[0].shape)
  values = []
  with runtime.local_cpp_context():
    process = factory.create(spec)
    state = process.initialize()
    for _ in range(repeats):
      out = process.next(state, list(clients))
      state = out.state
      values.append(_flat(out.result))
  sens = query.sensitivity(s)
  return Release(query.name, epsilon, z, sens, np.stack(values), z * sens)
