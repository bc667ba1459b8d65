"""``none``: plain FedAvg, the non-private reference (`UnweightedMeanFactory`)."""

from __future__ import annotations

from fl_analytics.mechanisms import base


def _build(settings: base.AggregatorSettings):
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  return tff.aggregators.UnweightedMeanFactory(value_sum_factory=settings.record_sum)


MECHANISM = base.Mechanism(
    name='none', label='non-private',
    samplings=base.SAMPLED + ('shuffle',), accountants=('rdp', 'pld'), analysis='none',
    build=_build, compression=True)
