"""The same queries released by a central-DP library that sees the raw rows: PipelineDP.

PipelineDP (`pipeline-dp` 0.2.1, pinned in requirements.txt, local backend) gets one
row per (user, partition) of what the devices would send, and bounds each user's
contributions itself, with the federated query's bounds: a count query's vector entries
become partitions (`max_partitions_contributed` = the query's L0 bound, one
contribution per partition, so L2 sensitivity sqrt(L0), as the federated release);
a histogram's records become rows of their bin (`max_contributions` = the records'
bound, L2 sensitivity m: a flat histogram, where the federated one is a tree); heavy
hitters' paths are partitions it selects privately (Gaussian thresholding, no public
partitions). Its budget accountant is the naive one with the whole (epsilon, delta) for
the one aggregation (which, with private partition selection, PipelineDP splits
between the selection and the counts); its Gaussian noise is PyDP's analytic
calibration (Balle and Wang 2018).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np


def _engine(epsilon: float, delta: float):
  import pipeline_dp  # pylint: disable=g-import-not-at-top
  accountant = pipeline_dp.NaiveBudgetAccountant(total_epsilon=epsilon,
                                                 total_delta=delta)
  return pipeline_dp, accountant, pipeline_dp.DPEngine(accountant,
                                                        pipeline_dp.LocalBackend())


def counts(users: np.ndarray, keys: np.ndarray, *, epsilon: float, delta: float,
           partitions: Optional[Sequence] = None, max_partitions: int = 1,
           max_per_partition: int = 1,
           max_contributions: Optional[int] = None) -> dict:
  """PipelineDP's DP count of rows per partition ({key: count}); private partition
  selection (Gaussian thresholding) when `partitions` is None."""
  pipeline_dp, accountant, engine = _engine(epsilon, delta)
  bounds = ({'max_contributions': max_contributions} if max_contributions else
            {'max_partitions_contributed': max_partitions,
             'max_contributions_per_partition': max_per_partition})
  params = pipeline_dp.AggregateParams(
      noise_kind=pipeline_dp.NoiseKind.GAUSSIAN, metrics=[pipeline_dp.Metrics.COUNT],
      partition_selection_strategy=(
          pipeline_dp.PartitionSelectionStrategy.GAUSSIAN_THRESHOLDING), **bounds)
  extractors = pipeline_dp.DataExtractors(privacy_id_extractor=lambda r: r[0],
                                          partition_extractor=lambda r: r[1],
                                          value_extractor=lambda r: 0)
  rows = list(zip(np.asarray(users).tolist(), list(keys)))
  result = engine.aggregate(rows, params, extractors,
                            public_partitions=None if partitions is None
                            else list(partitions))
  accountant.compute_budgets()
  return {k: float(v.count) for k, v in result}


def vector_rows(vectors: np.ndarray):
  """(user, entry) of every unit of `vectors` [users, dim] (entries are counts)."""
  v = np.rint(vectors).astype(np.int64)
  users, entries = np.nonzero(v)
  reps = v[users, entries]
  return np.repeat(users, reps), np.repeat(entries, reps)


def vector_counts(vectors: np.ndarray, *, epsilon: float, delta: float, l0: int,
                  max_contributions: Optional[int] = None) -> np.ndarray:
  """PipelineDP's release of the column sums of `vectors`, as a dense vector."""
  users, entries = vector_rows(vectors)
  got = counts(users, entries, epsilon=epsilon, delta=delta,
               partitions=range(vectors.shape[1]), max_partitions=l0,
               max_contributions=max_contributions)
  return np.asarray([got.get(k, 0.0) for k in range(vectors.shape[1])])


def path_counts(user_paths: Sequence[Sequence[str]], *, epsilon: float, delta: float,
                max_strings: int) -> Mapping[str, float]:
  users = [u for u, paths in enumerate(user_paths) for _ in paths]
  keys = [x for paths in user_paths for x in paths]
  return counts(np.asarray(users, np.int64), keys, epsilon=epsilon, delta=delta,
                max_partitions=max_strings)
