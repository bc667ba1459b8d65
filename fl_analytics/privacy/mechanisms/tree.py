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

With a production schedule (`sampling=min_separation` or `available`: each user at most
k times, at least b rounds apart) the tree is not restarted: one tree over the run,
accounted as `accounting.TreeAggregationZcdpDpEvent(z, T, k, b - 1)` (Kairouz et al.
2021, Appendix D, TF Privacy's `compute_zcdp_single_tree`, the accounting of Gboard's
DP-FTRL models). A prefix of the tree's releases is a function of the whole run's, so
every round is accounted as the planned run (`DpSettings.planned_rounds`): the bound
holds for the rounds so far, and is exact at the end.
"""

from __future__ import annotations

import secrets

import dp_accounting

from fl_analytics.privacy import accounting
from fl_analytics.privacy import sampling
from fl_analytics.privacy.mechanisms import base


def _rounds_per_pass(settings: base.DpSettings) -> int:
  return sampling.rounds_per_pass(clients_per_round=settings.clients_per_round,
                                  population_size=settings.population_size)


def _one_tree(settings: base.DpSettings) -> bool:
  return settings.sampling != 'shuffle'


def _tree_rounds(settings: base.DpSettings, rounds: int) -> int:
  return max(rounds, settings.planned_rounds or 0)


def _event(settings: base.DpSettings, rounds: int) -> dp_accounting.DpEvent:
  """`rounds` rounds: one tree per pass, each user once per tree; or one tree over the
  planned run, each user at most k times, b apart."""
  if _one_tree(settings):
    steps = _tree_rounds(settings, rounds)
    k, b = settings.bounds(steps)
    return accounting.TreeAggregationZcdpDpEvent(
        settings.accounted_noise_multiplier, steps, k, b - 1)
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
  if _one_tree(settings):
    steps = _tree_rounds(settings, rounds)
    k, b = settings.bounds(steps)
    event = _event(settings, rounds)
    return {'max_participations': k, 'min_separation': b, 'accounted_rounds': steps,
            'zcdp_rho': event.zcdp()}, (
        f'DP-FTRL (Kairouz et al. 2021) with one aggregation tree over {steps} rounds '
        f'(not restarted): {settings.scheme.note}. Accounted as rho-zCDP '
        '(TreeAggregationZcdpDpEvent: TF Privacy compute_zcdp_single_tree with '
        f'max_participation={k}, min_separation={b - 1} leaves between two '
        f'participations), for the {steps} rounds planned, which bounds any prefix of '
        'the run.')
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
  if period is None and settings.population_size is not None and not _one_tree(settings):
    period = _rounds_per_pass(settings)
  if record_specs is None or (not _one_tree(settings) and (not period or period < 1)):
    raise ValueError('dp.mechanism=tree needs the record specs and a restart period '
                     f'>= 1 (rounds per pass). Found {period!r}.')
  # Without a seed, TF Privacy's tree seeds its noise from tf.timestamp(), which can be
  # guessed from when the run started: unseeded runs take a seed from the OS instead.
  seed = settings.noise_seed if settings.noise_seed is not None else secrets.randbits(62)
  sum_query = tfp.TreeResidualSumQuery.build_l2_gaussian_query(
      settings.clip, settings.noise_multiplier, record_specs, noise_seed=seed,
      use_efficient=True)
  if period:
    sum_query = tfp.RestartQuery(
        sum_query, tfp.restart_query.PeriodicRoundRestartIndicator(period=period))
  return tff.aggregators.DifferentiallyPrivateFactory(
      tfp.NormalizedQuery(sum_query, denominator=float(settings.clients_per_round)),
      record_sum)


MECHANISM = base.Mechanism(
    name='tree', label='DP-FTRL (tree)', title='DP-FTRL',
    samplings=('shuffle',) + base.SCHEDULES, accountants=('rdp',),
    build=_build, event=_event,
    statement=_statement, noise='tree aggregation (DP-FTRL) noise',
    accountant_refusal=(
        'The pld accountant cannot analyse tree aggregation: dp_accounting 0.4.3 '
        'accounts SingleEpochTreeAggregationDpEvent with RDP only.'),
    # TF Privacy's efficient tree estimator: its round noise's covariance is not
    # declared here, so the audit tests the accountant's epsilon only.
    noise_covariance=None,
    secure_sum=True, compression=True, fixed_clip=True, color='tab:green', marker='^',
    linestyle=':')
