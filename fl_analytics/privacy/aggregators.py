"""The model aggregator of DP-FedAvg, chosen by `dp.mechanism`.

DP is just another `tff.aggregators` factory (the TFF design): the learning algorithm is
`tff.learning.algorithms.build_unweighted_fed_avg` and only its `model_aggregator`
changes.

Each mechanism is a module of `fl_analytics.privacy.mechanisms` (``none``, ``gaussian_fixed``,
``gaussian_adaptive``, ``tree``, ``distributed``) that says what it allows, checks its
own arguments and builds its factory; this module adds what is shared: the checks of
`dp.secure_sum` and `compression.*` against the mechanism, and the inner sum of the
clipped records (secure sum or compression) that the mechanism's factory wraps.

With `secure_sum`, the clipped updates of `gaussian_fixed` and `tree` are summed with
`tff.aggregators.SecureSumFactory` (bounds +-clip, 32-bit quantization) inside
`DifferentiallyPrivateFactory`, the central-DP-with-SecAgg setting: the server sees only
the sum and adds the noise. TFF's local runtime simulates the secure sum. Adaptive
clipping is refused: fixed secure-sum bounds against a clip that adapts would leave the
quantization error relative to the clip unbounded.

With `compression.bits` > 0, updates are uniformly quantized to that many bits
(Suresh et al. 2017, "Distributed Mean Estimation with Limited Communication"): TFF's
`EncodedSumFactory.quantize_above_threshold`, the sum inside
`tff.learning.compression_aggregator`, whose fixed 8 bits and 20000-element threshold
would leave this task's small tensors uncompressed; here both are config values
(`compression.bits`, `compression.threshold`). Each tensor of more than `threshold`
elements is quantized between its own min and max with stochastic rounding and
bit-packed. For `none` it is the value sum of the mean; for `gaussian_fixed` and `tree`
it sums the clipped updates inside `DifferentiallyPrivateFactory` (as the secure sum
does), so quantization can enlarge a clipped record, which the accountant covers
(`statement.compression_sensitivity_factor`). Not with `gaussian_adaptive` (the clip
count query would need its own analysis), `distributed` (it already quantizes to
`dp.bits`) or `secure_sum` (`EncodedSumFactory` takes no inner sum). The stochastic
rounding is drawn by TensorFlow unseeded: compressed runs do not repeat exactly.

`check` validates the resolved settings (`mechanisms.DpSettings`) without importing TFF,
so a bad value fails before anything is trained or written; `build` builds from them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Callable, Optional

from fl_analytics.privacy import mechanisms
from fl_analytics.privacy.mechanisms import distributed
from fl_analytics.privacy.mechanisms import gaussian_adaptive

# What each mechanism allows is in `fl_analytics.privacy.mechanisms`.
SECURE_SUM_MECHANISMS = mechanisms.names(secure_sum=True)
COMPRESSION_MECHANISMS = mechanisms.names(compression=True)
# TF Model Optimization's UniformQuantizationEncodingStage allows 1..16 bits.
MAX_COMPRESSION_BITS = 16


adaptive_max_noise_multiplier = gaussian_adaptive.max_noise_multiplier
distributed_parameters = distributed.parameters


def check_secure_sum(mechanism: str, secure_sum: bool) -> None:
  """Raises ValueError when `dp.secure_sum` is asked of a mechanism without it."""
  if secure_sum and mechanism not in SECURE_SUM_MECHANISMS:
    why = mechanisms.REGISTRY[mechanism].secure_sum_refusal if (
        mechanism in mechanisms.REGISTRY) else ''
    raise ValueError(
        f'dp.secure_sum=True is supported for dp.mechanism in '
        f'{", ".join(SECURE_SUM_MECHANISMS)}. Found {mechanism!r}.'
        + (f' {why}' if why else ''))


def check_compression(*, mechanism: str, bits: int, threshold: int,
                      secure_sum: bool = False) -> None:
  """Raises ValueError for `compression.*` values no run can use (bits 0: off)."""
  if not isinstance(bits, int) or not 0 <= bits <= MAX_COMPRESSION_BITS:
    raise ValueError(f'compression.bits must be an integer in [0, {MAX_COMPRESSION_BITS}] '
                     f'(0: no compression). Found {bits!r}.')
  if not isinstance(threshold, int) or threshold < 0:
    raise ValueError(f'compression.threshold must be an integer >= 0. Found {threshold!r}.')
  if not bits:
    return
  if mechanism not in COMPRESSION_MECHANISMS:
    why = mechanisms.REGISTRY[mechanism].compression_refusal if (
        mechanism in mechanisms.REGISTRY) else ''
    raise ValueError(
        f'compression.bits > 0 is supported for dp.mechanism in '
        f'{", ".join(COMPRESSION_MECHANISMS)}. Found {mechanism!r}'
        + (f': {why}.' if why else '.'))
  if secure_sum:
    raise ValueError('compression.bits > 0 cannot be combined with dp.secure_sum=True: '
                     "TFF's EncodedSumFactory takes no inner sum factory.")


def compression_sum_factory(*, bits: int, threshold: int):
  """TFF's uniform-quantization sum (the core of `tff.learning.compression_aggregator`)."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  return tff.aggregators.EncodedSumFactory.quantize_above_threshold(
      quantization_bits=bits, threshold=threshold)


def check(settings: mechanisms.DpSettings) -> None:
  """Raises ValueError naming the bad value and what is allowed (the resolved settings;
  `training.resolve_config` calls it once per launch, after calibration)."""
  m = mechanisms.get(settings.mechanism)
  if not m.private:
    return
  z = settings.noise_multiplier
  if not (z > 0 and math.isfinite(z)):
    raise ValueError(
        f'dp.noise_multiplier must be a finite number > 0 for dp.mechanism='
        f'{m.name}. Found {z}. (Use dp.mechanism=none for the non-private reference.)')
  if not (settings.clip > 0 and math.isfinite(settings.clip)):
    raise ValueError(f'dp.clip must be a finite number > 0. Found {settings.clip}.')
  m.check(settings)


def build(settings: mechanisms.DpSettings, *, record_specs=None):
  """The `tff.aggregators.UnweightedAggregationFactory` of checked `settings`.

  With `settings.noise_seed` set, the DP noise is drawn reproducibly from that seed
  (`fl_analytics.privacy.seeded_noise`, for simulation; tree aggregation takes the seed
  itself); with None, TF Privacy draws it from an unseeded generator. `tree` also
  needs `record_specs` (the model's trainable weights) and `settings.restart_period`.
  With `compression_bits` > 0 the (clipped) updates are summed quantized.
  """
  record_sum = None
  if settings.secure_sum:
    import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

    record_sum = tff.aggregators.SecureSumFactory(
        upper_bound_threshold=float(settings.clip),
        lower_bound_threshold=-float(settings.clip))
  elif settings.compression_bits:
    record_sum = compression_sum_factory(bits=settings.compression_bits,
                                         threshold=settings.compression_threshold)
  return mechanisms.get(settings.mechanism).build(
      settings, record_specs=record_specs, record_sum=record_sum)


def check_dp_config(*, secure_sum: bool = False, **settings) -> None:
  """`check_secure_sum` and `check` from loose values (`mechanisms.DpSettings` names)."""
  check_secure_sum(settings['mechanism'], secure_sum)
  check(mechanisms.settings(secure_sum=secure_sum, **settings))


def build_model_aggregator(*, record_specs=None, **settings):
  """The aggregator from loose values (`mechanisms.DpSettings` names), checked first."""
  dp = mechanisms.settings(**settings)
  check_compression(mechanism=dp.mechanism, bits=dp.compression_bits,
                    threshold=dp.compression_threshold, secure_sum=dp.secure_sum)
  check_secure_sum(dp.mechanism, dp.secure_sum)
  check(dp)
  return build(dp, record_specs=record_specs)


def vector_factories(settings: mechanisms.DpSettings, dim: int,
                     noise_seed: Optional[int] = None) -> Callable[[], Any]:
  """make_factory(): `build(settings)` for one float32 vector of `dim` coordinates,
  afresh at each call (the white-box audit's batches, `mechanism_audit`): call b draws
  its noise from `noise_seed + b`, or from the OS with None."""
  calls = itertools.count()

  def make():
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    b = next(calls)
    seeded = dataclasses.replace(
        settings, noise_seed=None if noise_seed is None else noise_seed + b)
    return build(seeded, record_specs=tf.TensorSpec([dim], tf.float32))

  return make
