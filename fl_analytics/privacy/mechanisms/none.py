"""``none``: plain FedAvg, the non-private reference (`UnweightedMeanFactory`)."""

from __future__ import annotations

from fl_analytics.privacy.mechanisms import base


def _build(settings: base.DpSettings, record_specs=None, record_sum=None):
  del settings, record_specs
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  return tff.aggregators.UnweightedMeanFactory(value_sum_factory=record_sum)


MECHANISM = base.Mechanism(
    name='none', label='non-private', title='plain FedAvg',
    samplings=base.SAMPLED + ('shuffle',), accountants=('rdp', 'pld'),
    build=_build, compression=True, canaries=False, noise_covariance=None,
    canary_refusal=(
        'does not clip, so a canary has no norm to be brought to and there is no '
        'claim to audit. For a no-noise reference use dp.mechanism=gaussian_fixed '
        'with a small dp.noise_multiplier (e.g. 0.001).'))
