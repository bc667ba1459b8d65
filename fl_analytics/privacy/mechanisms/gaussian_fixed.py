"""``gaussian_fixed``: DP-FedAvg with a fixed clip (McMahan et al. 2018).

`tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed`: each user's update is
clipped to L2 norm `dp.clip` and Gaussian noise of stddev `noise_multiplier * clip` is
added to the sum, divided by the expected cohort. Accounted as a sampled Gaussian
(`base.sampled_gaussian_event`), or, on a production schedule without amplification
(`base.SCHEDULES`), as k Gaussian mechanisms for a user's k participations: DP-FedAvg
as production could run it, the identity factorization of the matrix mechanisms.
"""

from __future__ import annotations

from fl_analytics.privacy.mechanisms import base


def with_seed_and_record_sum(factory, settings: base.DpSettings, record_sum):
  """A `DifferentiallyPrivateFactory` classmethod's result, with the run's noise seed
  and inner record sum.

  TFF builds the query inside its classmethods; `_query` is how to reach it without
  copying their noise-splitting arithmetic (pinned TFF 0.87.0).
  """
  if settings.noise_seed is None and record_sum is None:
    return factory
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  query = factory._query  # pylint: disable=protected-access
  if settings.noise_seed is not None:
    from fl_analytics.privacy import seeded_noise  # pylint: disable=g-import-not-at-top

    query = seeded_noise.SeededNoiseQuery(query, settings.noise_seed)
  return tff.aggregators.DifferentiallyPrivateFactory(query, record_sum)


def _build(settings: base.DpSettings, record_specs=None, record_sum=None):
  del record_specs
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  return with_seed_and_record_sum(
      tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
          noise_multiplier=settings.noise_multiplier,
          clients_per_round=float(settings.clients_per_round), clip=settings.clip),
      settings, record_sum)


MECHANISM = base.Mechanism(
    name='gaussian_fixed',
    label='fixed clipping', title='DP-FedAvg, fixed clipping',
    samplings=base.SAMPLED + base.SCHEDULES, accountants=('rdp', 'pld'),
    build=_build, event=base.sampled_gaussian_event,
    statement=base.sampled_gaussian_statement, noise='Gaussian noise',
    secure_sum=True, compression=True, fixed_clip=True,
    color='tab:orange', marker='s', linestyle='--')
