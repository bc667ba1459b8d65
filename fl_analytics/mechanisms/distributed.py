"""``distributed``: distributed DP over secure aggregation with the Skellam mechanism
(Agarwal, Kairouz, Liu 2021, "The Skellam Mechanism for Differentially Private
Federated Learning").

TFF's `DistributedDpSumFactory`, the core of `tff.learning.ddp_secure_aggregator`, with
its pipeline (concatenation, randomized Hadamard rotation, L2 clip `dp.clip`, scaling
and stochastic rounding to integers, local Skellam noise, modular secure sum of
`dp.bits`-bit integers), inside `UnweightedMeanFactory` with a securely summed count.
Two parts of `ddp_secure_aggregator` are left out because no analysis here covers them:
its adaptive clip (a hard-coded initial clip of 0.1, Gaussian noise on the clip counts
and a scale recomputed every round) and its adaptive zeroing (a norm quantile
estimated without noise). The clip is `dp.clip`, fixed, so every round runs the same
Skellam mechanism, accounted by `fl_analytics.privacy` from the parameters `parameters`
reads off TFF's own construction. TFF draws the Skellam noise from a timestamp seed:
these runs do not repeat exactly. Needs every sampled client to add its noise share, so
fixed-size cohorts and no dropout.
"""

from __future__ import annotations

import math

from fl_analytics.mechanisms import base

# TFF's range for the bit width of the modular secure sum.
MAX_BITS = 22


def _check(settings: base.AggregatorSettings) -> None:
  bits = settings.bits
  if not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
    raise ValueError(f'dp.bits must be an integer in [1, {MAX_BITS}]. Found {bits!r}.')
  if 2**bits < settings.clients_per_round:
    raise ValueError(
        f'dp.bits={bits} is too small for clients_per_round='
        f'{settings.clients_per_round:g}: the modular sum needs 2**bits >= '
        'clients_per_round. Raise dp.bits.')


def skellam_sum_factory(*, noise_multiplier: float, clip: float,
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


def parameters(*, noise_multiplier: float, clip: float,
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

  factory = skellam_sum_factory(noise_multiplier=noise_multiplier, clip=clip,
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


def _build(settings: base.AggregatorSettings):
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  from google.protobuf.internal import api_implementation  # pylint: disable=g-import-not-at-top

  if api_implementation.Type() == 'upb':
    # The computation of this aggregator nests deeper than upb's default parse
    # depth (100): building its proto fails with "DecodeError: Error parsing
    # message". Allowing oversize protos lifts the depth limit in upb.
    from google._upb import _message  # pylint: disable=g-import-not-at-top

    _message.SetAllowOversizeProtos(True)
  return tff.aggregators.UnweightedMeanFactory(
      value_sum_factory=skellam_sum_factory(
          noise_multiplier=settings.noise_multiplier, clip=settings.clip,
          clients_per_round=settings.clients_per_round, bits=settings.bits),
      count_sum_factory=tff.aggregators.SecureSumFactory(
          upper_bound_threshold=1, lower_bound_threshold=0))


MECHANISM = base.Mechanism(
    name='distributed', label='distributed Skellam',
    samplings=('fixed_size',), accountants=('rdp',), analysis='skellam', build=_build,
    check=_check, compression_refusal='it already quantizes updates to dp.bits',
    dropout=False,
    dropout_refusal=('each client adds a share of the noise, so clients that fail to '
                     'report would leave less noise than the accountant assumes.'),
    fixed_clip=True, color='tab:red', marker='D', linestyle='-.')
