"""``tree``: DP-FTRL (Kairouz et al. 2021, "Practical and Private (Deep) Learning
without Sampling or Shuffling").

Updates clipped to `dp.clip`, noise from tree aggregation of the running sum
(`tfp.TreeResidualSumQuery`, the query of TFF's `DifferentiallyPrivateFactory.
tree_aggregation`, with the efficient estimator), the tree restarted every
`restart_period` rounds (`tfp.RestartQuery`), i.e. after each pass over the users,
which is what the accounting assumes (the round loop runs the aggregator every round,
so restarts follow rounds). No sampling amplification: users take part in cyclic passes
(`sampling=shuffle`). The noise is seeded from `seed` (`dp.reproducible_noise`) or else
from the OS (`secrets`): TF Privacy's own default seed is the clock.

Accounting: `T` rounds are `SingleEpochTreeAggregationDpEvent(z, R)` composed once per
full pass of `R = population_size // clients_per_round` rounds, plus one for the partial
pass, under dp_accounting's REPLACE_SPECIAL relation (one user replaced by a user who
contributes zero), RDP only.
"""

from __future__ import annotations

import secrets

import dp_accounting

from fl_analytics.privacy import sampling
from fl_analytics.privacy.mechanisms import base


def _rounds_per_pass(settings: base.DpSettings) -> int:
  return sampling.rounds_per_pass(clients_per_round=settings.clients_per_round,
                                  population_size=settings.population_size)


def _event(settings: base.DpSettings, rounds: int) -> dp_accounting.DpEvent:
  """`rounds` rounds: one tree per pass, each user once per tree."""
  per_pass = _rounds_per_pass(settings)
  z = settings.accounted_noise_multiplier
  full, rest = divmod(rounds, per_pass)
  events = []
  if full:
    events.append(dp_accounting.SelfComposedDpEvent(
        dp_accounting.SingleEpochTreeAggregationDpEvent(z, per_pass), full))
  if rest:
    events.append(dp_accounting.SingleEpochTreeAggregationDpEvent(z, rest))
  return dp_accounting.ComposedDpEvent(events)


def _statement(settings: base.DpSettings, rounds: int) -> tuple[dict, str]:
  del rounds
  per_pass = _rounds_per_pass(settings)
  return {}, (
      f'DP-FTRL (Kairouz et al. 2021): cyclic passes of {per_pass} rounds over one '
      'shuffle of the users, so a user takes part at most once per pass and its '
      f'participations are {per_pass} rounds apart; the aggregation tree restarts '
      'after each pass. No sampling amplification is claimed; each pass is a '
      'SingleEpochTreeAggregationDpEvent (RDP, REPLACE_SPECIAL).')


def _build(settings: base.DpSettings, record_specs=None, record_sum=None):
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  import tensorflow_privacy as tfp  # pylint: disable=g-import-not-at-top

  period = settings.restart_period
  if period is None and settings.population_size is not None:
    period = _rounds_per_pass(settings)
  if record_specs is None or not period or period < 1:
    raise ValueError('dp.mechanism=tree needs the record specs and a restart period '
                     f'>= 1 (rounds per pass). Found {period!r}.')
  # Without a seed, TF Privacy's tree seeds its noise from tf.timestamp(), which can be
  # guessed from when the run started: unseeded runs take a seed from the OS instead.
  seed = settings.noise_seed if settings.noise_seed is not None else secrets.randbits(62)
  sum_query = tfp.TreeResidualSumQuery.build_l2_gaussian_query(
      settings.clip, settings.noise_multiplier, record_specs, noise_seed=seed,
      use_efficient=True)
  sum_query = tfp.RestartQuery(sum_query, tfp.restart_query.PeriodicRoundRestartIndicator(
      period=period))
  return tff.aggregators.DifferentiallyPrivateFactory(
      tfp.NormalizedQuery(sum_query, denominator=float(settings.clients_per_round)),
      record_sum)


MECHANISM = base.Mechanism(
    name='tree', label='DP-FTRL (tree)', title='DP-FTRL',
    samplings=('shuffle',), accountants=('rdp',), build=_build, event=_event,
    statement=_statement, noise='tree aggregation (DP-FTRL) noise',
    accountant_refusal=(
        'The pld accountant cannot analyse tree aggregation: dp_accounting 0.4.3 '
        'accounts SingleEpochTreeAggregationDpEvent with RDP only.'),
    secure_sum=True, compression=True, fixed_clip=True, color='tab:green', marker='^',
    linestyle=':')
