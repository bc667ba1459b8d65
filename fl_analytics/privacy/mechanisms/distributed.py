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
Skellam mechanism, accounted from the parameters `parameters` reads off TFF's own
construction. TFF draws the Skellam noise from a timestamp seed:
these runs do not repeat exactly, and their statement is simulation-only
(`clock_seeded_noise`). Needs every sampled client to add its noise share, so
fixed-size cohorts and no dropout.

Accounting: each of the exactly `m` sampled clients adds Skellam noise of variance
`s**2` to its scaled, rounded update, so the securely summed noise is Skellam with
variance `m * s**2` whatever the data. Replacing one user moves the integer sum by at
most `2 * l2` in L2 and `2 * l1` in L1 (`l1`, `l2`: the bounds the query checks on
every rounded update). dp_accounting has no event for the Skellam mechanism, so it is
`SkellamDpEvent` here, an `accounting.RdpDpEvent` whose RDP is Corollary 3.6 of Agarwal
et al. at integer orders; a round samples it without replacement (the general bound of
Wang, Balle, Kasiviswanathan 2019, Theorem 9, in `fl_analytics.privacy.accounting`), and `T`
rounds are that round self-composed `T` times. Poisson sampling is refused: the summed
noise would then depend on how many users took part, and a present and an absent user
would be told apart by the noise level.
"""

from __future__ import annotations

import dataclasses
import math

import attr
import dp_accounting
import numpy as np

from fl_analytics.privacy import accounting
from fl_analytics.privacy import sampling
from fl_analytics.privacy import secagg
from fl_analytics.privacy.mechanisms import base

# TFF's range for the bit width of the modular secure sum.
MAX_BITS = 22


def skellam_rdp(orders, *, l1_sensitivity: float, l2_sensitivity: float,
                variance: float) -> np.ndarray:
  """RDP of the Skellam mechanism at integer `orders` (Agarwal et al. 2021, Cor. 3.6).

  Integer-valued noise Sk(variance / 2, variance / 2) per coordinate (variance
  `variance`), a query whose value moves by at most `l2_sensitivity` in L2 and
  `l1_sensitivity` in L1 between neighbours:
  eps(a) <= a D2**2 / (2 mu) + min(((2a - 1) D2**2 + 6 D1) / (4 mu**2), 3 D1 / (2 mu)).
  """
  a = np.asarray(orders, dtype=float)
  if np.any(a < 2) or np.any(a != np.round(a)):
    raise ValueError(f'Skellam RDP orders must be integers >= 2. Found {orders}.')
  if not variance > 0:
    raise ValueError(f'Skellam variance must be > 0. Found {variance}.')
  d1, d2, mu = float(l1_sensitivity), float(l2_sensitivity), float(variance)
  return a * d2**2 / (2 * mu) + np.minimum(
      ((2 * a - 1) * d2**2 + 6 * d1) / (4 * mu**2), 3 * d1 / (2 * mu))


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SkellamDpEvent(accounting.RdpDpEvent):
  """The Skellam mechanism on an integer sum (Agarwal, Kairouz, Liu 2021).

  Noise of variance `variance` per coordinate on a sum that moves by at most
  `l1_sensitivity` (L1) and `l2_sensitivity` (L2) between neighbours.
  """

  l1_sensitivity: float
  l2_sensitivity: float
  variance: float

  def rdp(self, orders) -> np.ndarray:
    return skellam_rdp(orders, l1_sensitivity=self.l1_sensitivity,
                       l2_sensitivity=self.l2_sensitivity, variance=self.variance)


BITS = base.ConfigKey(
    'bits', 16, 'distributed: bit width of the modular secure sum (TFF: 1..22; at least '
    'log2 of the cohort: 12 suits ~100 clients, 16 ~1000). Its noise is drawn by TFF '
    'from a timestamp seed.')


def training_event(params, *, clients_per_round: int, population_size: int,
                   rounds: int) -> dp_accounting.DpEvent:
  """`rounds` rounds of the query with scaled parameters `params` on fixed-size cohorts."""
  variance = clients_per_round * float(params['local_stddev'])**2
  return dp_accounting.SelfComposedDpEvent(sampling.get('fixed_size').sampled_event(
      lambda sensitivity: SkellamDpEvent(
          sensitivity * float(params['l1_bound']),
          sensitivity * float(params['l2_bound']), variance),
      clients_per_round=clients_per_round, population_size=population_size), rounds)


def _event(settings: base.DpSettings, rounds: int) -> dp_accounting.DpEvent:
  if not settings.derived:
    raise ValueError('mechanism=distributed needs its scaled parameters (derived=...).')
  return training_event(settings.derived,
                        clients_per_round=settings.clients_per_round,
                        population_size=settings.population_size, rounds=rounds)


def _resolve(settings: base.DpSettings) -> base.DpSettings:
  """The settings with the query's scaled parameters for their noise multiplier (from
  `num_parameters`; settings without it keep the parameters they were given)."""
  if settings.num_parameters is None:
    return settings
  return dataclasses.replace(settings, derived=parameters(
      noise_multiplier=settings.noise_multiplier, clip=settings.clip,
      clients_per_round=int(settings.clients_per_round), bits=settings.param(BITS),
      dim=settings.num_parameters))


def _statement(settings: base.DpSettings, rounds: int) -> tuple[dict, str]:
  del rounds
  params = settings.derived
  return {
      'secure_aggregation': (
          f"TFF modular secure sum of {params['bits']}-bit integers; "
          + secagg.describe(settings.secure_protocol)),
      'analysis': (
          'Distributed Skellam (Agarwal, Kairouz, Liu 2021): every sampled client '
          'clips its update to L2 norm clip, rotates it (randomized Hadamard), '
          'scales it by scale and rounds it to integers (stochastically), and adds '
          'Skellam noise of stddev local_stddev; the server sees only the modular '
          'sum. RDP of the Skellam mechanism (Corollary 3.6) for noise variance '
          'clients_per_round * local_stddev**2 and replace-one sensitivities '
          '2 * l2_bound (L2) and 2 * l1_bound (L1) in the scaled domain, amplified '
          'by sampling without replacement (Wang, Balle, Kasiviswanathan 2019, '
          'Theorem 9), composed over rounds, converted at delta.'),
      'assumptions': (
          'All clients_per_round sampled clients report and add their noise share '
          '(a client that drops out would lower the noise; dropout is not '
          'simulated); the server learns only the sum (secure aggregation); the '
          'modular wrap-around and the un-scaling are post-processing. The bounds '
          'l1_bound and l2_bound are checked by the query on every rounded update, '
          'so a violation stops the run rather than weakening the guarantee.'),
      'distributed_parameters': dict(params),
  }, settings.scheme.note + '; see analysis and assumptions.'


def _check(settings: base.DpSettings) -> None:
  bits = settings.param(BITS)
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

  _check(base.DpSettings(clients_per_round=clients_per_round, params={BITS.name: bits}))
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


def _build(settings: base.DpSettings, record_specs=None, record_sum=None):
  del record_specs, record_sum
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
          clients_per_round=settings.clients_per_round, bits=settings.param(BITS)),
      count_sum_factory=tff.aggregators.SecureSumFactory(
          upper_bound_threshold=1, lower_bound_threshold=0))


MECHANISM = base.Mechanism(
    name='distributed', label='distributed Skellam', title='distributed Skellam',
    samplings=('fixed_size',), accountants=('rdp',), build=_build, event=_event,
    check=_check, statement=_statement, resolve=_resolve, secure_aggregation=True,
    rdp_orders=accounting.INTEGER_ORDERS, needs_num_parameters=True,
    noise=('Skellam noise added by the clients, summed by secure aggregation '
           '(simulated)'),
    sampling_refusal=('With Poisson sampling the summed noise depends on how many users '
                      'took part.'),
    accountant_refusal='dp_accounting has no PLD for it.',
    compression_refusal='it already quantizes updates to dp.bits',
    dropout=False,
    dropout_refusal=('each client adds a share of the noise, so clients that fail to '
                     'report would leave less noise than the accountant assumes.'),
    fixed_clip=True, config=(BITS,),
    clock_seeded_noise=(
        "TFF's DistributedDpSumFactory seeds every client's Skellam noise and stochastic "
        'rounding from tf.timestamp() (no seed can be given), so whoever knows when a '
        'round ran to the microsecond can regenerate the noise and remove it'),
    color='tab:red', marker='D', linestyle='-.')
