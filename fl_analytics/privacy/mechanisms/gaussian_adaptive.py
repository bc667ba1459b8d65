"""``gaussian_adaptive``: DP-FedAvg with adaptive clipping (Andrew et al. 2021).

`tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive`: the clip starts at
`dp.clip` and follows the `dp.target_unclipped_quantile` quantile of update norms,
estimated privately. TFF splits the *total* noise multiplier between the update and
the clipped-count query, so the same sampled Gaussian events account for it.
"""

from __future__ import annotations

from fl_analytics.privacy.mechanisms import base
from fl_analytics.privacy.mechanisms import gaussian_fixed


TARGET_UNCLIPPED_QUANTILE = base.ConfigKey(
    'target_unclipped_quantile', 0.5,
    'gaussian_adaptive: the quantile of update norms the clip tracks (in (0, 1)).')
CLIP_LEARNING_RATE = base.ConfigKey(
    'clip_learning_rate', 0.2, "gaussian_adaptive: the clip's geometric step size (> 0).")


def max_noise_multiplier(clients_per_round: float) -> float:
  """The bound of TFF's `adaptive_clip_noise_params` with its default count noise.

  The clipped-count query gets stddev `0.05 * clients_per_round`; the total noise
  multiplier must stay below twice that, or no noise is left for the update itself.
  """
  return 2 * 0.05 * clients_per_round


def _check(settings: base.DpSettings) -> None:
  bound = max_noise_multiplier(settings.clients_per_round)
  if settings.noise_multiplier >= bound:
    raise ValueError(
        f'dp.noise_multiplier={settings.noise_multiplier:g} is too large for adaptive '
        f'clipping with clients_per_round={settings.clients_per_round:g}: it must be '
        f'below 0.1 * clients_per_round = {bound:g} (TFF gives the clipped-count query '
        'noise stddev 0.05 * clients_per_round). Raise clients_per_round, lower '
        'the noise (or dp.target_epsilon), or use dp.mechanism=gaussian_fixed.')
  quantile = settings.param(TARGET_UNCLIPPED_QUANTILE)
  if not 0 < quantile < 1:
    raise ValueError(f'dp.target_unclipped_quantile must be in (0, 1). Found {quantile}.')
  rate = settings.param(CLIP_LEARNING_RATE)
  if not rate > 0:
    raise ValueError(f'dp.clip_learning_rate must be > 0. Found {rate}.')


def _value_noise(settings: base.DpSettings, rounds: int):
  """The claimed noise on the clipped sum: the value query's share of the noise
  multiplier (TFF's `adaptive_clip_noise_params`; the clip-count query takes the rest),
  at the initial clip."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.python.aggregators import differential_privacy  # pylint: disable=g-import-not-at-top

  value_z, _ = differential_privacy.adaptive_clip_noise_params(
      settings.noise_multiplier, float(settings.clients_per_round))
  return (value_z * settings.clip)**2 * np.eye(rounds)


def _build(settings: base.DpSettings, record_specs=None, record_sum=None):
  del record_specs
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  return gaussian_fixed.with_seed_and_record_sum(
      tff.aggregators.DifferentiallyPrivateFactory.gaussian_adaptive(
          noise_multiplier=settings.noise_multiplier,
          clients_per_round=float(settings.clients_per_round),
          initial_l2_norm_clip=settings.clip,
          target_unclipped_quantile=settings.param(TARGET_UNCLIPPED_QUANTILE),
          learning_rate=settings.param(CLIP_LEARNING_RATE)),
      settings, record_sum)


MECHANISM = base.Mechanism(
    name='gaussian_adaptive',
    label='adaptive clipping', title='DP-FedAvg, adaptive clipping',
    samplings=base.SAMPLED, accountants=('rdp', 'pld'),
    build=_build, event=base.sampled_gaussian_event,
    statement=base.sampled_gaussian_statement, noise='Gaussian noise', check=_check,
    secure_sum_refusal=("TFF's secure sum needs fixed bounds, and with adaptive clipping "
                        'its quantization error relative to the clip is unbounded.'),
    compression_refusal=("no analysis here covers quantization's effect on the "
                         'clip-count query'),
    config=(TARGET_UNCLIPPED_QUANTILE, CLIP_LEARNING_RATE), noise_covariance=_value_noise,
    audit_rounds=1, color='tab:blue', marker='o',
    linestyle='-')
