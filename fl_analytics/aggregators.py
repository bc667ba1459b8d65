"""The model aggregator of DP-FedAvg, chosen by `dp.mechanism`.

DP is just another `tff.aggregators` factory (the TFF design): the learning algorithm is
`tff.learning.algorithms.build_unweighted_fed_avg` and only its `model_aggregator`
changes.

* ``none``: `tff.aggregators.UnweightedMeanFactory`, plain FedAvg, the non-private
  reference.
* ``gaussian_fixed``: `DifferentiallyPrivateFactory.gaussian_fixed`: each user's update
  is clipped to L2 norm `dp.clip` and Gaussian noise of stddev `noise_multiplier * clip`
  is added to the sum, divided by the expected cohort (McMahan et al. 2018).
* ``gaussian_adaptive``: `DifferentiallyPrivateFactory.gaussian_adaptive`: the clip norm
  starts at `dp.clip` and follows the `dp.target_unclipped_quantile` quantile of update
  norms, estimated privately (Andrew et al. 2021).
* ``tree``: DP-FTRL (Kairouz et al. 2021, "Practical and Private (Deep) Learning without
  Sampling or Shuffling"): updates clipped to `dp.clip`, noise from tree aggregation of
  the running sum (`tfp.TreeResidualSumQuery`, the query of TFF's
  `DifferentiallyPrivateFactory.tree_aggregation`, with the efficient estimator), the
  tree restarted every `restart_period` rounds (`tfp.RestartQuery`), i.e. after each
  pass over the users, which is what the accounting assumes. No sampling
  amplification: users take part in cyclic passes (`sampling=shuffle`).

* ``distributed``: distributed DP over secure aggregation with the Skellam mechanism
  (Agarwal, Kairouz, Liu 2021): TFF's `DistributedDpSumFactory`, the core of
  `tff.learning.ddp_secure_aggregator`, with its pipeline (concatenation, randomized
  Hadamard rotation, L2 clip `dp.clip`, scaling and stochastic rounding to integers,
  local Skellam noise, modular secure sum of `dp.bits`-bit integers), inside the same
  `UnweightedMeanFactory` with a securely summed count. Two parts of
  `ddp_secure_aggregator` are left out because no analysis here covers them: its
  adaptive clip (a hard-coded initial clip of 0.1, Gaussian noise on the clip counts
  and a scale recomputed every round) and its adaptive zeroing (a norm quantile
  estimated without noise). The clip is `dp.clip`, fixed, so every round runs the same
  Skellam mechanism, accounted by `fl_analytics.privacy` from the parameters
  `distributed_parameters` reads off TFF's own construction. TFF draws the Skellam
  noise from a timestamp seed: these runs do not repeat exactly.

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
(`privacy.compression_sensitivity_factor`). Not with `gaussian_adaptive` (the clip
count query would need its own analysis), `distributed` (it already quantizes to
`dp.bits`) or `secure_sum` (`EncodedSumFactory` takes no inner sum). The stochastic
rounding is drawn by TensorFlow unseeded: compressed runs do not repeat exactly.

`check_dp_config` validates the settings without importing TFF, so a bad value fails
before anything is trained or written.
"""

from __future__ import annotations

import math
from typing import Optional

from fl_analytics import mechanisms

# What each mechanism allows is in `fl_analytics.mechanisms`.
MECHANISMS = tuple(mechanisms.REGISTRY)
# TFF's range for the bit width of the distributed mechanism's secure sum.
MAX_BITS = 22
SECURE_SUM_MECHANISMS = mechanisms.names(secure_sum=True)
# Mechanisms whose clip is `dp.clip` in every round.
FIXED_CLIP_MECHANISMS = mechanisms.names(fixed_clip=True)
COMPRESSION_MECHANISMS = mechanisms.names(compression=True)
# TF Model Optimization's UniformQuantizationEncodingStage allows 1..16 bits.
MAX_COMPRESSION_BITS = 16


def adaptive_max_noise_multiplier(clients_per_round: float) -> float:
  """The bound of TFF's `adaptive_clip_noise_params` with its default count noise.

  The clipped-count query gets stddev `0.05 * clients_per_round`; the total noise
  multiplier must stay below twice that, or no noise is left for the update itself.
  """
  return 2 * 0.05 * clients_per_round


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


def check_dp_config(
    *,
    mechanism: str,
    noise_multiplier: float,
    clip: float,
    clients_per_round: float,
    target_unclipped_quantile: float = 0.5,
    clip_learning_rate: float = 0.2,
    secure_sum: bool = False,
    bits: int = 16,
) -> None:
  """Raises ValueError naming the bad value and what is allowed."""
  check_secure_sum(mechanism, secure_sum)
  if not mechanisms.get(mechanism).private:
    return
  if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
    raise ValueError(
        f'dp.noise_multiplier must be a finite number > 0 for dp.mechanism='
        f'{mechanism}. Found {noise_multiplier}. (Use dp.mechanism=none for the '
        'non-private reference.)')
  if not (clip > 0 and math.isfinite(clip)):
    raise ValueError(f'dp.clip must be a finite number > 0. Found {clip}.')
  if mechanism == 'distributed':
    if not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
      raise ValueError(f'dp.bits must be an integer in [1, {MAX_BITS}]. Found {bits!r}.')
    if 2**bits < clients_per_round:
      raise ValueError(
          f'dp.bits={bits} is too small for clients_per_round={clients_per_round:g}: '
          f'the modular sum needs 2**bits >= clients_per_round. Raise dp.bits.')
  if mechanism == 'gaussian_adaptive':
    bound = adaptive_max_noise_multiplier(clients_per_round)
    if noise_multiplier >= bound:
      raise ValueError(
          f'dp.noise_multiplier={noise_multiplier:g} is too large for adaptive '
          f'clipping with clients_per_round={clients_per_round:g}: it must be below '
          f'0.1 * clients_per_round = {bound:g} (TFF gives the clipped-count query '
          'noise stddev 0.05 * clients_per_round). Raise clients_per_round, lower '
          'the noise (or dp.target_epsilon), or use dp.mechanism=gaussian_fixed.')
    if not 0 < target_unclipped_quantile < 1:
      raise ValueError(
          'dp.target_unclipped_quantile must be in (0, 1). Found '
          f'{target_unclipped_quantile}.')
    if not clip_learning_rate > 0:
      raise ValueError(
          f'dp.clip_learning_rate must be > 0. Found {clip_learning_rate}.')


def _skellam_sum_factory(*, noise_multiplier: float, clip: float,
                         clients_per_round: float, bits: int):
  """TFF's `DistributedDpSumFactory` as `distributed` runs it (fixed clip, Skellam).

  Not exported under `tff.aggregators` in TFF 0.87; the factory of
  `tff.learning.ddp_secure_aggregator`. Its constructor validates `bits` against the
  cohort.
  """
  from tensorflow_federated.python.aggregators import distributed_dp  # pylint: disable=g-import-not-at-top

  return distributed_dp.DistributedDpSumFactory(
      noise_multiplier=noise_multiplier, expected_clients_per_round=int(clients_per_round),
      bits=bits, l2_clip=clip, mechanism='distributed_skellam', rotation_type='hd',
      auto_l2_clip=False)


def distributed_parameters(*, noise_multiplier: float, clip: float,
                           clients_per_round: int, bits: int, dim: int) -> dict:
  """The parameters of TFF's distributed Skellam query for these settings.

  `DistributedDpSumFactory` (pinned TFF 0.87.0) picks a scale factor from the bit
  width, the expected cohort and the local noise, inflates the clip for stochastic
  rounding, and gives the Skellam query the L1/L2 bounds and local stddev in the
  scaled integer domain. The same TFF functions, in the same order, give them here;
  `tests/aggregators_test.py` checks them against the query state of a built process.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.python.aggregators import discretization  # pylint: disable=g-import-not-at-top
  from tensorflow_federated.python.aggregators import distributed_dp  # pylint: disable=g-import-not-at-top

  factory = _skellam_sum_factory(noise_multiplier=noise_multiplier, clip=clip,
                                 clients_per_round=clients_per_round, bits=bits)
  k_stddevs = factory._k_stddevs  # pylint: disable=protected-access
  padded_dim = 2**math.ceil(math.log2(max(1, dim)))  # Hadamard rotation pads to 2**k
  local_stddev = noise_multiplier * clip / math.sqrt(clients_per_round)
  scale = min(float(distributed_dp._heuristic_scale_factor(  # pylint: disable=protected-access
      local_stddev, clip, bits, int(clients_per_round), padded_dim, k_stddevs).numpy()),
              distributed_dp.MAX_SCALE_FACTOR)
  inflated = float(discretization.inflated_l2_norm_bound(
      l2_norm_bound=clip, gamma=1.0 / scale, beta=0.0, dim=padded_dim).numpy())
  l2_bound = (inflated + 1e-5) * scale
  l1_bound = math.ceil(l2_bound * min(math.sqrt(padded_dim), l2_bound))
  # The query keeps them as int32 / float32 (`initial_global_state`).
  return {'l1_bound': int(np.int32(l1_bound)), 'l2_bound': float(np.float32(l2_bound)),
          'local_stddev': float(np.float32(local_stddev * scale)), 'scale': scale,
          'bits': bits, 'dim': dim, 'padded_dim': padded_dim}


def build_model_aggregator(
    *,
    mechanism: str,
    noise_multiplier: float,
    clip: float,
    clients_per_round: float,
    target_unclipped_quantile: float = 0.5,
    clip_learning_rate: float = 0.2,
    noise_seed: Optional[int] = None,
    record_specs=None,
    restart_period: Optional[int] = None,
    secure_sum: bool = False,
    bits: int = 16,
    compression_bits: int = 0,
    compression_threshold: int = 0,
):
  """The `tff.aggregators.UnweightedAggregationFactory` for `mechanism`.

  With `noise_seed` set, the DP noise is drawn reproducibly from that seed
  (`fl_analytics.seeded_noise`, for simulation; tree aggregation takes the seed
  itself); with None, TF Privacy draws it from an unseeded generator. `tree` also
  needs `record_specs` (the model's trainable weights) and `restart_period`. With
  `compression_bits` > 0 the (clipped) updates are summed quantized.
  """
  check_compression(mechanism=mechanism, bits=compression_bits,
                    threshold=compression_threshold, secure_sum=secure_sum)
  check_dp_config(
      mechanism=mechanism,
      noise_multiplier=noise_multiplier,
      clip=clip,
      clients_per_round=clients_per_round,
      target_unclipped_quantile=target_unclipped_quantile,
      clip_learning_rate=clip_learning_rate,
      secure_sum=secure_sum,
      bits=bits,
  )
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  dp_factory = tff.aggregators.DifferentiallyPrivateFactory
  record_sum = None
  if secure_sum:
    record_sum = tff.aggregators.SecureSumFactory(
        upper_bound_threshold=float(clip), lower_bound_threshold=-float(clip))
  elif compression_bits:
    record_sum = compression_sum_factory(bits=compression_bits,
                                         threshold=compression_threshold)
  if mechanism == 'none':
    return tff.aggregators.UnweightedMeanFactory(value_sum_factory=record_sum)
  if mechanism == 'distributed':
    from google.protobuf.internal import api_implementation  # pylint: disable=g-import-not-at-top

    if api_implementation.Type() == 'upb':
      # The computation of this aggregator nests deeper than upb's default parse
      # depth (100): building its proto fails with "DecodeError: Error parsing
      # message". Allowing oversize protos lifts the depth limit in upb.
      from google._upb import _message  # pylint: disable=g-import-not-at-top

      _message.SetAllowOversizeProtos(True)
    return tff.aggregators.UnweightedMeanFactory(
        value_sum_factory=_skellam_sum_factory(
            noise_multiplier=noise_multiplier, clip=clip,
            clients_per_round=clients_per_round, bits=bits),
        count_sum_factory=tff.aggregators.SecureSumFactory(
            upper_bound_threshold=1, lower_bound_threshold=0))
  if mechanism == 'tree':
    import tensorflow_privacy as tfp  # pylint: disable=g-import-not-at-top

    if record_specs is None or not restart_period or restart_period < 1:
      raise ValueError('dp.mechanism=tree needs the record specs and a restart period '
                       f'>= 1 (rounds per pass). Found {restart_period!r}.')
    sum_query = tfp.TreeResidualSumQuery.build_l2_gaussian_query(
        clip, noise_multiplier, record_specs, noise_seed=noise_seed,
        use_efficient=True)
    sum_query = tfp.RestartQuery(
        sum_query, tfp.restart_query.PeriodicRoundRestartIndicator(period=restart_period))
    return dp_factory(tfp.NormalizedQuery(sum_query, denominator=float(clients_per_round)),
                      record_sum)
  if mechanism == 'gaussian_fixed':
    factory = dp_factory.gaussian_fixed(
        noise_multiplier=noise_multiplier,
        clients_per_round=float(clients_per_round),
        clip=clip,
    )
  else:
    factory = dp_factory.gaussian_adaptive(
        noise_multiplier=noise_multiplier,
        clients_per_round=float(clients_per_round),
        initial_l2_norm_clip=clip,
        target_unclipped_quantile=target_unclipped_quantile,
        learning_rate=clip_learning_rate,
    )
  if noise_seed is None and record_sum is None:
    return factory
  # TFF builds the query inside these classmethods; `_query` is how to reach it
  # without copying their noise-splitting arithmetic (pinned TFF 0.87.0).
  query = factory._query  # pylint: disable=protected-access
  if noise_seed is not None:
    from fl_analytics import seeded_noise  # pylint: disable=g-import-not-at-top

    query = seeded_noise.SeededNoiseQuery(query, noise_seed)
  return dp_factory(query, record_sum)
