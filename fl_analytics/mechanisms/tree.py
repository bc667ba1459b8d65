"""``tree``: DP-FTRL (Kairouz et al. 2021, "Practical and Private (Deep) Learning
without Sampling or Shuffling").

Updates clipped to `dp.clip`, noise from tree aggregation of the running sum
(`tfp.TreeResidualSumQuery`, the query of TFF's `DifferentiallyPrivateFactory.
tree_aggregation`, with the efficient estimator), the tree restarted every
`restart_period` rounds (`tfp.RestartQuery`), i.e. after each pass over the users,
which is what the accounting assumes (the round loop runs the aggregator every round,
so restarts follow rounds). No sampling amplification: users take part in cyclic passes
(`sampling=shuffle`).
"""

from __future__ import annotations

from fl_analytics.mechanisms import base


def _build(settings: base.AggregatorSettings):
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  import tensorflow_privacy as tfp  # pylint: disable=g-import-not-at-top

  if (settings.record_specs is None or not settings.restart_period
      or settings.restart_period < 1):
    raise ValueError('dp.mechanism=tree needs the record specs and a restart period '
                     f'>= 1 (rounds per pass). Found {settings.restart_period!r}.')
  sum_query = tfp.TreeResidualSumQuery.build_l2_gaussian_query(
      settings.clip, settings.noise_multiplier, settings.record_specs,
      noise_seed=settings.noise_seed, use_efficient=True)
  sum_query = tfp.RestartQuery(sum_query, tfp.restart_query.PeriodicRoundRestartIndicator(
      period=settings.restart_period))
  return tff.aggregators.DifferentiallyPrivateFactory(
      tfp.NormalizedQuery(sum_query, denominator=float(settings.clients_per_round)),
      settings.record_sum)


MECHANISM = base.Mechanism(
    name='tree', label='DP-FTRL (tree)',
    samplings=('shuffle',), accountants=('rdp',), analysis='tree', build=_build,
    secure_sum=True, compression=True, fixed_clip=True,
    color='tab:green', marker='^', linestyle=':')
