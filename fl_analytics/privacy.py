"""Privacy accounting for user-level DP federated averaging (dp_accounting only).

A round of DP-FedAvg (McMahan et al. 2018, "Learning Differentially Private Recurrent
Language Models") clips each sampled user's update to L2 norm C and adds Gaussian noise
of standard deviation `noise_multiplier * C` to their sum. What one round is, as a
dp_accounting event, depends on how the cohort was sampled, and the accountant must
analyse exactly that:

* ``poisson``: every training user joins independently with probability
  `q = clients_per_round / population_size`:
  `PoissonSampledDpEvent(q, GaussianDpEvent(z))`, under add-or-remove-one-user
  neighbours. Both the RDP and the PLD accountant analyse it.
* ``fixed_size``: exactly `clients_per_round` users, uniformly without replacement:
  `SampledWithoutReplacementDpEvent(N, m, GaussianDpEvent(z / 2))` under replace-one-
  user neighbours (Wang, Balle, Kasiviswanathan 2019). Replacing one user moves the
  clipped sum by up to 2C, so the noise relative to that sensitivity is `z / 2`. Only
  the RDP accountant analyses it; `pld` with `fixed_size` is refused.

* ``shuffle`` (only with ``dp.mechanism=tree``, DP-FTRL of Kairouz et al. 2021): cyclic
  passes of `R = population_size // clients_per_round` rounds over one shuffle of the
  users, the aggregation tree restarted after each pass, so each user is in each tree
  at most once. No sampling amplification is claimed: `T` rounds are
  `SingleEpochTreeAggregationDpEvent(z, R)` composed once per full pass, plus one for
  the partial pass, under dp_accounting's REPLACE_SPECIAL relation (one user replaced
  by a user who contributes zero), RDP only.

* ``distributed`` (only with ``sampling=fixed_size``): distributed DP with the Skellam
  mechanism over secure aggregation (Agarwal, Kairouz, Liu 2021, "The Skellam
  Mechanism for Differentially Private Federated Learning"; TFF's
  `DistributedDpSumFactory`). Each of the exactly `m` sampled clients adds Skellam
  noise of variance `s**2` to its scaled, rounded update, so the securely summed noise
  is Skellam with variance `m * s**2` whatever the data. Replacing one user moves the
  integer sum by at most `2 * l2` in L2 and `2 * l1` in L1 (`l1`, `l2`: the bounds the
  query checks on every rounded update). One round's RDP is their Corollary 3.6 for
  integer orders, amplified by sampling without replacement with the general bound of
  Wang, Balle, Kasiviswanathan 2019 (Theorem 9, replace-one neighbours); `T` rounds
  compose to `T` times that, converted with dp_accounting's `compute_epsilon`.
  dp_accounting has no DpEvent for the Skellam mechanism, hence the code here.
  Poisson sampling is refused: the summed noise would then depend on how many users
  took part, and a present and an absent user would be told apart by the noise level.

For the sampled mechanisms `T` rounds are the round event self-composed `T` times. For adaptive clipping (Andrew
et al. 2021) TFF's `gaussian_adaptive` splits the *total* noise multiplier between the
update and the clipped-count query, so the same events describe it.

The unit of privacy is one user's whole data. This module imports neither TensorFlow
nor TFF, so privacy questions are answered at once (`experiments/privacy.py`).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional, Sequence

import dp_accounting
from dp_accounting.rdp import rdp_privacy_accountant
import numpy as np

from fl_analytics import mechanisms

DEFAULT_DELTA = 1e-5
ACCOUNTANTS = ('rdp', 'pld')
SAMPLINGS = ('poisson', 'fixed_size', 'shuffle')
UNIT_OF_PRIVACY = "one user's whole data (user-level DP)"
NEIGHBORING_RELATIONS = {
    'poisson': 'add or remove one user',
    'fixed_size': 'replace one user',
    'shuffle': 'replace one user by a user who contributes nothing (zero update)',
}
# The mechanisms each analysis here covers (`fl_analytics.mechanisms`).
TREE_MECHANISMS = mechanisms.names(analysis='tree')
DISTRIBUTED_MECHANISMS = mechanisms.names(analysis='skellam')
# Integer RDP orders for the Skellam analysis (the bound holds at integer orders).
SKELLAM_ORDERS = tuple(range(2, 257)) + (384, 512, 768, 1024)


def sampling_probability(*, clients_per_round: float, population_size: int) -> float:
  """The share of the population sampled per round (expected share for Poisson)."""
  if not isinstance(population_size, int) or population_size < 1:
    raise ValueError(f'population size must be an integer >= 1. Found {population_size!r}.')
  if not 0 < clients_per_round <= population_size:
    raise ValueError(
        f'clients_per_round must be in (0, population size = {population_size}]. '
        f'Found {clients_per_round}.')
  return clients_per_round / population_size


def check_accounting(*, accountant: str, sampling: str, mechanism: str = '') -> None:
  """Refuses combinations the accountant cannot analyse, naming what is allowed.

  `mechanism` (when given) must match the sampling: tree aggregation is accounted for
  cyclic passes (`shuffle`) only, and `shuffle` only for tree aggregation.
  """
  if accountant not in ACCOUNTANTS:
    raise ValueError(
        f'accountant must be one of {", ".join(ACCOUNTANTS)}. Found {accountant!r}.')
  if sampling not in SAMPLINGS:
    raise ValueError(
        f'sampling must be one of {", ".join(SAMPLINGS)}. Found {sampling!r}.')
  if mechanism in TREE_MECHANISMS and sampling != 'shuffle':
    raise ValueError(
        f'dp.mechanism={mechanism} (DP-FTRL) is accounted for sampling=shuffle (cyclic '
        f'passes over the users) only. Found sampling={sampling}.')
  if sampling == 'shuffle' and mechanism and mechanism not in TREE_MECHANISMS + ('none',):
    raise ValueError(
        f'sampling=shuffle is accounted only for dp.mechanism=tree; {mechanism} needs '
        'sampling=poisson or fixed_size.')
  if mechanism in DISTRIBUTED_MECHANISMS and (sampling != 'fixed_size'
                                             or accountant != 'rdp'):
    raise ValueError(
        f'dp.mechanism={mechanism} (distributed Skellam) is accounted for '
        'sampling=fixed_size with the rdp accountant only (found sampling='
        f'{sampling}, accountant={accountant}): with Poisson sampling the summed noise '
        'depends on how many users took part, and dp_accounting has no PLD for it.')
  if accountant == 'pld' and sampling == 'shuffle':
    raise ValueError(
        'The pld accountant cannot analyse tree aggregation (sampling=shuffle): '
        'dp_accounting 0.4.3 accounts SingleEpochTreeAggregationDpEvent with RDP only. '
        'Use the rdp accountant.')
  if accountant == 'pld' and sampling == 'fixed_size':
    raise ValueError(
        "The pld accountant cannot analyse fixed_size sampling: dp_accounting 0.4.3 "
        'has no PLD for sampling without replacement. Use the rdp accountant (replace-'
        'one-user neighbours) or poisson sampling.')


# Above this, RDP's arithmetic fails in dp_accounting 0.4.3 ("Renyi divergence cannot
# be negative"); epsilon has long stopped falling by then (about 0.0035 at delta 1e-5
# from noise multiplier 1e3 on, with 40 rounds of 50 of 776 users): the accountant's
# largest order bounds it from below.
MAX_NOISE_MULTIPLIER = 1e4
# Calibration searches noise multipliers from here up to MAX_NOISE_MULTIPLIER.
MIN_CALIBRATED_NOISE_MULTIPLIER = 1e-2


def check_budget(*, delta: float, population_size: Optional[int] = None,
                 target_epsilon: Optional[float] = None,
                 noise_multiplier: Optional[float] = None, prefix: str = '') -> None:
  """Raises ValueError for budget settings no statement can be made for.

  One validation for `train.py` (`prefix='dp.'`, config keys) and the privacy CLI
  (`prefix='--'`, flags): delta in (0, 1) and below 1 / population size (a larger delta
  allows revealing some user outright), a finite positive target epsilon, a noise
  multiplier in (0, MAX_NOISE_MULTIPLIER] (0 is no privacy at all: use the non-private
  reference).
  """
  if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 1:
    raise ValueError(f'{prefix}delta must be in (0, 1). Found {delta!r}.')
  if population_size is not None and (not isinstance(population_size, int)
                                      or population_size < 1):
    raise ValueError(f'population size must be an integer >= 1. Found {population_size!r}.')
  if population_size is not None and delta >= 1 / population_size:
    raise ValueError(
        f'{prefix}delta={delta:g} must be below 1 / population size = '
        f'{1 / population_size:.3g}; a larger delta allows revealing some user.')
  if target_epsilon is not None and not (target_epsilon > 0
                                         and math.isfinite(target_epsilon)):
    raise ValueError(
        f'{prefix}target_epsilon must be a finite number > 0. Found {target_epsilon}.')
  if noise_multiplier is not None and not (
      0 < noise_multiplier <= MAX_NOISE_MULTIPLIER and math.isfinite(noise_multiplier)):
    raise ValueError(
        f'{prefix}noise_multiplier must be in (0, {MAX_NOISE_MULTIPLIER:g}]. Found '
        f'{noise_multiplier:g}. 0 adds no noise (no privacy: use the non-private '
        'reference); above the maximum the RDP arithmetic fails, and epsilon stops '
        'falling long before it.')


def round_event(
    *, noise_multiplier: float, clients_per_round: float, population_size: int,
    sampling: str = 'poisson',
) -> dp_accounting.DpEvent:
  """The DpEvent of one round as it ran."""
  q = sampling_probability(
      clients_per_round=clients_per_round, population_size=population_size)
  if sampling == 'poisson':
    return dp_accounting.PoissonSampledDpEvent(
        q, dp_accounting.GaussianDpEvent(noise_multiplier))
  if sampling == 'fixed_size':
    if int(clients_per_round) != clients_per_round:
      raise ValueError(
          'clients_per_round must be a whole number with sampling=fixed_size. '
          f'Found {clients_per_round}.')
    return dp_accounting.SampledWithoutReplacementDpEvent(
        population_size, int(clients_per_round),
        dp_accounting.GaussianDpEvent(noise_multiplier / 2))
  raise ValueError(
      f'round_event covers poisson and fixed_size sampling. Found {sampling!r}.')


def rounds_per_pass(*, clients_per_round: float, population_size: int) -> int:
  """Rounds of one cyclic pass over the users (sampling=shuffle)."""
  sampling_probability(clients_per_round=clients_per_round, population_size=population_size)
  if int(clients_per_round) != clients_per_round:
    raise ValueError('clients_per_round must be a whole number with sampling=shuffle. '
                     f'Found {clients_per_round}.')
  return population_size // int(clients_per_round)


def tree_training_event(
    *, noise_multiplier: float, clients_per_round: float, population_size: int,
    rounds: int,
) -> dp_accounting.DpEvent:
  """`rounds` rounds of DP-FTRL: one tree per pass, each user once per tree."""
  per_pass = rounds_per_pass(clients_per_round=clients_per_round,
                             population_size=population_size)
  full, rest = divmod(rounds, per_pass)
  events = []
  if full:
    events.append(dp_accounting.SelfComposedDpEvent(
        dp_accounting.SingleEpochTreeAggregationDpEvent(noise_multiplier, per_pass), full))
  if rest:
    events.append(dp_accounting.SingleEpochTreeAggregationDpEvent(noise_multiplier, rest))
  return dp_accounting.ComposedDpEvent(events)


def make_accountant(*, accountant: str, sampling: str) -> dp_accounting.PrivacyAccountant:
  check_accounting(accountant=accountant, sampling=sampling)
  if accountant == 'pld':
    # 1e-3 instead of the default 1e-4: 20x faster here, epsilon within 1e-4 of it,
    # and still a pessimistic (upper-bound) discretization.
    return dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
  relation = {
      'poisson': dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
      'fixed_size': dp_accounting.NeighboringRelation.REPLACE_ONE,
      'shuffle': dp_accounting.NeighboringRelation.REPLACE_SPECIAL,
  }[sampling]
  return dp_accounting.rdp.RdpAccountant(neighboring_relation=relation)


def _check_common(*, noise_multiplier: float, rounds: int, delta: float) -> None:
  if not noise_multiplier >= 0 or not math.isfinite(noise_multiplier):
    raise ValueError(
        f'noise_multiplier must be a finite number >= 0. Found {noise_multiplier}.')
  if not isinstance(rounds, int) or rounds < 0:
    raise ValueError(f'rounds must be an integer >= 0. Found {rounds!r}.')
  if not 0 < delta < 1:
    raise ValueError(f'delta must be in (0, 1). Found {delta}.')


def training_event(
    *, noise_multiplier: float, clients_per_round: float, population_size: int,
    rounds: int, sampling: str = 'poisson',
) -> dp_accounting.DpEvent:
  """The DpEvent of `rounds` rounds as they ran under `sampling`."""
  if sampling == 'shuffle':
    return tree_training_event(noise_multiplier=noise_multiplier,
                               clients_per_round=clients_per_round,
                               population_size=population_size, rounds=rounds)
  return dp_accounting.SelfComposedDpEvent(
      round_event(noise_multiplier=noise_multiplier, clients_per_round=clients_per_round,
                  population_size=population_size, sampling=sampling), rounds)


def epsilon_spent(
    *,
    noise_multiplier: float,
    clients_per_round: float,
    population_size: int,
    rounds: int,
    delta: float = DEFAULT_DELTA,
    sampling: str = 'poisson',
    accountant: str = 'rdp',
) -> float:
  """Epsilon at `delta` after `rounds` rounds (0 for none, inf without noise)."""
  _check_common(noise_multiplier=noise_multiplier, rounds=rounds, delta=delta)
  check_accounting(accountant=accountant, sampling=sampling)
  # Built even when not composed: it validates the cohort against the population.
  event = training_event(noise_multiplier=max(noise_multiplier, 1e-12),
                         clients_per_round=clients_per_round,
                         population_size=population_size, rounds=rounds,
                         sampling=sampling)
  if rounds == 0:
    return 0.0
  if noise_multiplier == 0:
    return math.inf
  if accountant == 'rdp' and sampling != 'shuffle':  # T identical rounds: T * RDP(round)
    orders, rdp = _one_round_rdp(event.event, sampling)
    return float(rdp_privacy_accountant.compute_epsilon(orders, rounds * rdp, delta)[0])
  acc = make_accountant(accountant=accountant, sampling=sampling)
  acc.compose(event)
  return float(acc.get_epsilon(delta))


@functools.lru_cache(maxsize=64)
def _one_round_rdp(event: dp_accounting.DpEvent, sampling: str):
  """RDP of one round at the accountant's orders, computed once per event.

  `SelfComposedDpEvent(e, T)` costs RDP(e) * T; RdpAccountant recomputes RDP(e) on
  every call (0.6 s for sampling without replacement), which would sit on the round
  loop. The orders and vector are read from an accountant that composed one round;
  `privacy_test` checks the result against a fresh accountant composing T rounds.
  """
  acc = make_accountant(accountant='rdp', sampling=sampling)
  acc.compose(event)
  return np.asarray(acc._orders), np.array(acc._rdp)  # pylint: disable=protected-access


def calibrate_noise_multiplier(
    *,
    target_epsilon: float,
    clients_per_round: float,
    population_size: int,
    rounds: int,
    delta: float = DEFAULT_DELTA,
    sampling: str = 'poisson',
    accountant: str = 'rdp',
) -> float:
  """The smallest noise multiplier whose `rounds` rounds spend <= target_epsilon."""
  if not target_epsilon > 0 or not math.isfinite(target_epsilon):
    raise ValueError(f'target_epsilon must be a finite number > 0. Found {target_epsilon}.')
  _check_common(noise_multiplier=1.0, rounds=rounds, delta=delta)
  check_accounting(accountant=accountant, sampling=sampling)
  if rounds == 0:
    raise ValueError('Cannot calibrate noise for 0 rounds.')

  # The ends of the search. At the small end RDP stands in for PLD (PLD is slow at tiny
  # noise, and never reports more than RDP, so a target RDP meets there PLD meets too);
  # at the large end the run's own accountant answers (fast there).
  for z, end_accountant, reachable, advice in (
      (MIN_CALIBRATED_NOISE_MULTIPLIER, 'rdp', lambda e: e > target_epsilon,
       'Such a budget protects nothing; choose a smaller target.'),
      (MAX_NOISE_MULTIPLIER, accountant, lambda e: e <= target_epsilon,
       'No noise reaches it; choose a larger target, fewer rounds or a smaller cohort.')):
    spent = epsilon_spent(noise_multiplier=z, clients_per_round=clients_per_round,
                          population_size=population_size, rounds=rounds, delta=delta,
                          sampling=sampling, accountant=end_accountant)
    if not reachable(spent):
      raise ValueError(
          f'target_epsilon={target_epsilon:g} is out of reach: noise multiplier {z:g}, '
          f'an end of the calibrated range [{MIN_CALIBRATED_NOISE_MULTIPLIER:g}, '
          f'{MAX_NOISE_MULTIPLIER:g}], spends {spent:.3g} at delta {delta:g} over '
          f'{rounds} rounds. {advice}')

  def make_event(z):
    return training_event(noise_multiplier=z, clients_per_round=clients_per_round,
                          population_size=population_size, rounds=rounds,
                          sampling=sampling)

  bracket = dp_accounting.LowerEndpointAndGuess(1e-2, 1.0)
  if accountant == 'pld':
    # PLD is slow for tiny noise (a wide privacy loss support), which the default
    # bracket search probes. RDP never reports less than PLD, so the RDP-calibrated
    # noise spends at most the target under PLD: search below it.
    upper = calibrate_noise_multiplier(
        target_epsilon=target_epsilon, clients_per_round=clients_per_round,
        population_size=population_size, rounds=rounds, delta=delta,
        sampling=sampling, accountant='rdp')
    lower = upper / 2
    while lower > 1e-2 and epsilon_spent(
        noise_multiplier=lower, clients_per_round=clients_per_round,
        population_size=population_size, rounds=rounds, delta=delta,
        sampling=sampling, accountant='pld') <= target_epsilon:
      lower /= 2
    bracket = dp_accounting.ExplicitBracketInterval(lower, upper)
  return float(
      dp_accounting.calibrate_dp_mechanism(
          lambda: make_accountant(accountant=accountant, sampling=sampling),
          make_event,
          target_epsilon,
          delta,
          bracket_interval=bracket,
          tol=1e-4,
      )
  )


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


def sample_without_replacement_rdp(orders, rdp: np.ndarray, q: float) -> np.ndarray:
  """RDP after sampling a fraction `q` without replacement (replace-one neighbours).

  Wang, Balle, Kasiviswanathan 2019, Theorem 9, for any mechanism with RDP `rdp` at
  the integer `orders` 2, 3, ..., max (all of them must be present) and unbounded
  eps(inf): for integer a,
  (a - 1) eps'(a) <= log(1 + q**2 C(a, 2) min(4 (e**eps(2) - 1), 2 e**eps(2))
                          + sum_{j=3..a} 2 q**j C(a, j) e**((j - 1) eps(j))).
  For the Gaussian mechanism dp_accounting uses the same bound strengthened by its
  Theorem 27; at order 2 the two coincide (`privacy_test`).
  """
  orders = [int(o) for o in orders]
  if orders != list(range(2, len(orders) + 2)):
    raise ValueError('sample_without_replacement_rdp needs the orders 2, 3, ..., max. '
                     f'Found {orders[:5]}...')
  if not 0 < q <= 1:
    raise ValueError(f'sampling fraction must be in (0, 1]. Found {q}.')
  rdp = np.asarray(rdp, dtype=float)
  if q == 1:
    return rdp
  eps2 = rdp[0]  # rdp[j - 2] is eps(j)
  order2 = min(math.log(4) + eps2 + math.log1p(-math.exp(-eps2)) if eps2 > 0
               else -math.inf, math.log(2) + eps2)
  log_comb = rdp_privacy_accountant._log_comb  # pylint: disable=protected-access
  out = []
  for a in orders:
    log_terms = [0.0, 2 * math.log(q) + log_comb(a, 2) + order2]
    log_terms += [math.log(2) + j * math.log(q) + log_comb(a, j) + (j - 1) * rdp[j - 2]
                  for j in range(3, a + 1)]
    out.append(float(np.logaddexp.reduce(log_terms)) / (a - 1))
  return np.array(out)


def distributed_round_rdp(*, l1_bound: float, l2_bound: float, local_stddev: float,
                          clients_per_round: int, population_size: int) -> np.ndarray:
  """RDP at `SKELLAM_ORDERS` of one round of distributed Skellam, fixed-size cohort.

  `l1_bound`, `l2_bound` and `local_stddev` are in the scaled integer domain the
  noise is added in (the query's own parameters, `aggregators.distributed_parameters`).
  """
  q = sampling_probability(clients_per_round=clients_per_round,
                           population_size=population_size)
  if int(clients_per_round) != clients_per_round:
    raise ValueError('clients_per_round must be a whole number with sampling=fixed_size. '
                     f'Found {clients_per_round}.')
  return _distributed_round_rdp(float(l1_bound), float(l2_bound), float(local_stddev),
                                int(clients_per_round), q)


@functools.lru_cache(maxsize=256)
def _distributed_round_rdp(l1, l2, local_stddev, clients, q):
  base = skellam_rdp(SKELLAM_ORDERS, l1_sensitivity=2 * l1, l2_sensitivity=2 * l2,
                     variance=clients * local_stddev**2)
  contiguous = [o for o in SKELLAM_ORDERS if o <= 256]
  amplified = sample_without_replacement_rdp(contiguous, base[:len(contiguous)], q)
  # Orders past the contiguous range get the unamplified RDP (still an upper bound).
  return np.concatenate([np.minimum(amplified, base[:len(contiguous)]),
                         base[len(contiguous):]])


def distributed_epsilon(*, params: dict, clients_per_round: int, population_size: int,
                        rounds: int, delta: float = DEFAULT_DELTA) -> float:
  """Epsilon at `delta` after `rounds` rounds of distributed Skellam (see above)."""
  _check_common(noise_multiplier=1.0, rounds=rounds, delta=delta)
  rdp = distributed_round_rdp(
      l1_bound=params['l1_bound'], l2_bound=params['l2_bound'],
      local_stddev=params['local_stddev'], clients_per_round=clients_per_round,
      population_size=population_size)
  if rounds == 0:
    return 0.0
  return float(rdp_privacy_accountant.compute_epsilon(
      np.array(SKELLAM_ORDERS, dtype=float), rounds * rdp, delta)[0])


def calibrate_distributed(*, target_epsilon: float, params_fn, clients_per_round: int,
                          population_size: int, rounds: int,
                          delta: float = DEFAULT_DELTA) -> float:
  """The smallest noise multiplier z whose rounds spend <= target_epsilon.

  `params_fn(z)` gives the mechanism's scaled parameters for z (they depend on z
  through the scale factor TFF picks); bisection on log z, to a relative 1e-4.
  """
  if not target_epsilon > 0 or not math.isfinite(target_epsilon):
    raise ValueError(f'target_epsilon must be a finite number > 0. Found {target_epsilon}.')
  if rounds == 0:
    raise ValueError('Cannot calibrate noise for 0 rounds.')

  def eps(z):
    return distributed_epsilon(params=params_fn(z), clients_per_round=clients_per_round,
                               population_size=population_size, rounds=rounds,
                               delta=delta)

  lo, hi = 0.05, 1.0
  while eps(hi) > target_epsilon:
    lo, hi = hi, hi * 2
    if hi > 1e4:
      raise ValueError(f'No noise multiplier up to 1e4 reaches epsilon {target_epsilon}.')
  while eps(lo) <= target_epsilon and lo > 1e-3:
    lo /= 2
  while hi / lo > 1 + 1e-4:
    mid = math.sqrt(lo * hi)
    lo, hi = (lo, mid) if eps(mid) <= target_epsilon else (mid, hi)
  return hi


def secure_sum_sensitivity_factor(num_parameters: int) -> float:
  """How much TFF's 32-bit secure sum can enlarge one user's clipped update.

  `SecureSumFactory` with bounds [-C, C] quantizes each coordinate to 2**32 levels
  with deterministic rounding to nearest (`secure_quantized_sum`), an error of at most
  half a step, C / (2**32 - 1), per coordinate; so a record of L2 norm <= C reaches at
  most C * (1 + sqrt(d) / (2**32 - 1)). The accountant divides the noise multiplier by
  this factor. (Float32 rounding of the sums themselves is not modelled, as in every
  floating-point DP implementation.)
  """
  if num_parameters < 1:
    raise ValueError(f'num_parameters must be >= 1. Found {num_parameters}.')
  return 1.0 + math.sqrt(num_parameters) / (2**32 - 1)


def compression_sensitivity_factor(*, bits: int, tensor_sizes: Sequence[int],
                                   threshold: int) -> float:
  """How much uniform quantization (`compression.bits`) can enlarge a clipped update.

  TFF's `EncodedSumFactory.quantize_above_threshold` quantizes each tensor x_t of more
  than `threshold` elements (d_t of them) between its own min and max to L = 2**bits - 1
  levels, rounding stochastically: every coordinate moves by less than
  (max_t - min_t) / L, and (max_t - min_t)**2 <= 2 ||x_t||**2. So
  ||q - x||**2 < sum_t 2 d_t ||x_t||**2 / L**2 <= (2 max_t d_t / L**2) ||x||**2, and a
  record of norm <= C reaches at most C * (1 + sqrt(2 max_t d_t) / L). The accountant
  divides the noise multiplier by this factor.
  """
  if not 1 <= bits <= 16:
    raise ValueError(f'bits must be in [1, 16]. Found {bits}.')
  quantized = [d for d in tensor_sizes if d > threshold]
  if not quantized:
    return 1.0
  return 1.0 + math.sqrt(2 * max(quantized)) / (2**bits - 1)


def dropout_note(dropout: float, sampling: str) -> str:
  """Why the accountant's epsilon still holds when sampled clients fail to report.

  Dropout is independent of the data and leaves the clip, the noise and its
  denominator unchanged; only contributions go missing.
  """
  if sampling not in _DROPOUT_REASONS:
    raise ValueError(f'No dropout analysis for sampling={sampling!r}.')
  return (f'Each sampled client fails to report with probability {dropout:g}, '
          'independently of the data; the round uses the others, with the same clip, '
          'noise and denominator, and the epsilon still holds: '
          + _DROPOUT_REASONS[sampling] + '.')


_DROPOUT_REASONS = {
    'poisson': (
        'a user then contributes with probability q * (1 - dropout) <= q, and the '
        'Poisson-subsampled Gaussian spends less privacy at a smaller q, so the '
        'accountant, which uses q, gives an upper bound'),
    'fixed_size': (
        'given how many report, the reporting clients are a uniform sample without '
        'replacement of that size, whose amplification is at least that of a sample '
        'of clients_per_round, and a mixture over how many report is no less private '
        'than its worst part'),
    'shuffle': (
        'a user still takes part at most once per pass, one pass apart, and a user who '
        'drops out contributes nothing that round'),
}


# What a DP training run writes that the (epsilon, delta) guarantee does not cover,
# and why; `privacy.json:not_covered` lists it (README "Privacy").
NOT_COVERED = (
    {'output': 'metrics.csv: cohort_size, reported',
     'why': 'exact counts of sampled and reporting clients, not noised; they depend only '
            'on the sampling and dropout randomness, not on any user\'s data'},
    {'output': 'metrics.csv: train_loss, train_accuracy',
     'why': "exact averages over the round's reporting clients, not noised: simulation "
            'diagnostics that a deployment would not release'},
    {'output': 'metrics.csv: train_batches',
     'why': "left empty in DP runs: the local steps of the round's clients depend on "
            'their data sizes and are not noised'},
    {'output': 'metrics.csv: eval_* columns, evaluation.json, calibration.csv, '
               'eval_users.csv, figures/calibration.png',
     'why': 'computed on held-out users, who are never trained on and get no protection '
            'from this guarantee (eval_users.csv, one row per user, is written only '
            'with evaluation.per_user_rows)'},
)


def randomness_caveats(*, reproducible_noise: bool,
                       reproducible_sampling: bool = True) -> list[str]:
  """Why a simulated run's guarantee holds only in simulation, one reason each.

  The guarantee assumes the adversary does not know the mechanism's randomness. With
  `dp.reproducible_sampling` a run draws its cohorts (and dropout) from `seed`, which
  `config.json` records; with `dp.reproducible_noise` it draws the noise from `seed`
  too, and whoever knows the seed can subtract it. Empty: neither is reproducible.
  """
  caveats = []
  if reproducible_sampling:
    caveats.append(
        'cohort sampling and dropout are drawn from seed, recorded in config.json: '
        'whoever reads it knows who took part in every round, so the sampling '
        'amplification does not hold against them (dp.reproducible_sampling=True)')
  if reproducible_noise:
    caveats.append('the DP noise is drawn from seed (dp.reproducible_noise=True): '
                   'whoever knows the seed can regenerate the noise and remove it')
  return caveats


def guarantee_fields(*, private: bool, epsilon: Optional[float], delta: float,
                     mechanism: str, accountant: str, neighboring_relation: str,
                     population_size: int, caveats: Sequence[str],
                     not_covered: Sequence[dict]) -> dict[str, Any]:
  """The fields every `privacy.json` starts with, training's and analytics' alike.

  What is protected and how (`unit_of_privacy`, `neighboring_relation`, `mechanism`,
  `accountant`), at what (`epsilon`, `delta`; epsilon None when there is no single
  one), among whom (`population_size`), whether only in simulation
  (`simulation_only`, `simulation_caveats`) and what the guarantee leaves out
  (`not_covered`). The last three only for private releases.
  """
  return {
      'epsilon': epsilon if epsilon is None or math.isfinite(epsilon) else None,
      'delta': delta,
      'differentially_private': private and (epsilon is None or math.isfinite(epsilon)),
      **({'simulation_only': bool(caveats), 'simulation_caveats': list(caveats),
          'not_covered': [dict(item) for item in not_covered]} if private else {}),
      'mechanism': mechanism,
      'accountant': accountant,
      'neighboring_relation': neighboring_relation,
      'unit_of_privacy': UNIT_OF_PRIVACY,
      'population_size': population_size,
  }


def privacy_statement(
    *,
    mechanism: str,
    noise_multiplier: float,
    clients_per_round: float,
    population_size: int,
    rounds: int,
    delta: float = DEFAULT_DELTA,
    sampling: str = 'poisson',
    accountant: str = 'rdp',
    sensitivity_factor: float = 1.0,
    secure_sum: bool = False,
    distributed: Optional[dict] = None,
    compression_bits: int = 0,
    dropout: float = 0.0,
    opted_out_users: int = 0,
    reproducible_noise: bool = False,
    reproducible_sampling: bool = False,
) -> dict[str, Any]:
  """What was protected, how, and at what (epsilon, delta): the `privacy.json` body.

  `sensitivity_factor` (>= 1) is how much the aggregation can enlarge one user's
  clipped contribution (`secure_sum_sensitivity_factor`,
  `compression_sensitivity_factor`); the accountant uses
  `noise_multiplier / sensitivity_factor`. For `mechanism=distributed`,
  `distributed` holds the mechanism's scaled parameters (`l1_bound`, `l2_bound`,
  `local_stddev`, `scale`, `bits`, `dim`; `aggregators.distributed_parameters`).
  `dropout` and `opted_out_users` (`fl_analytics.devices`) add why the epsilon holds
  when sampled clients fail to report, and who is not in `population_size`.

  `simulation_only` says whether the guarantee holds only in simulation (its
  randomness can be reproduced from the published seed: `reproducible_noise`,
  `reproducible_sampling`; `simulation_caveats` says how, `randomness_caveats`);
  `not_covered` lists the run's outputs the guarantee does not cover (`NOT_COVERED`).
  """
  if not sensitivity_factor >= 1:
    raise ValueError(f'sensitivity_factor must be >= 1. Found {sensitivity_factor}.')
  check_accounting(accountant=accountant, sampling=sampling, mechanism=mechanism)
  q = sampling_probability(
      clients_per_round=clients_per_round, population_size=population_size)
  private = mechanism != 'none'
  caveats = randomness_caveats(reproducible_noise=reproducible_noise,
                               reproducible_sampling=reproducible_sampling)
  accounted_noise = noise_multiplier / sensitivity_factor
  is_distributed = mechanism in DISTRIBUTED_MECHANISMS
  if is_distributed and not distributed:
    raise ValueError(f'mechanism={mechanism} needs its parameters (distributed=...).')
  epsilon = (
      distributed_epsilon(params=distributed, clients_per_round=clients_per_round,
                          population_size=population_size, rounds=rounds, delta=delta)
      if is_distributed else
      epsilon_spent(noise_multiplier=accounted_noise, clients_per_round=clients_per_round,
                    population_size=population_size, rounds=rounds, delta=delta,
                    sampling=sampling, accountant=accountant)
      if private else math.inf)
  if is_distributed:
    sampling_note = ('Each round samples exactly clients_per_round training users '
                     'uniformly without replacement, as the accountant assumes; see '
                     'analysis and assumptions.')
  elif sampling == 'poisson':
    sampling_note = ('Each round samples every training user independently with '
                     'probability sampling_probability (Poisson), as the accountant '
                     'assumes.')
  elif sampling == 'fixed_size':
    sampling_note = ('Each round samples exactly clients_per_round training users '
                     'uniformly without replacement, as the accountant assumes; under '
                     'replace-one neighbours the clipped sum moves by up to 2 * clip, '
                     'so the accountant uses noise_multiplier / 2.')
  else:
    per_pass = rounds_per_pass(clients_per_round=clients_per_round,
                               population_size=population_size)
    sampling_note = (
        f'DP-FTRL (Kairouz et al. 2021): cyclic passes of {per_pass} rounds over one '
        'shuffle of the users, so a user takes part at most once per pass and its '
        f'participations are {per_pass} rounds apart; the aggregation tree restarts '
        'after each pass. No sampling amplification is claimed; each pass is a '
        'SingleEpochTreeAggregationDpEvent (RDP, REPLACE_SPECIAL).')
  return {
      **guarantee_fields(
          private=private, epsilon=epsilon, delta=delta, mechanism=mechanism,
          accountant=accountant, neighboring_relation=NEIGHBORING_RELATIONS[sampling],
          population_size=population_size, caveats=caveats, not_covered=NOT_COVERED),
      'sampling': sampling,
      'sampling_probability': q,
      'noise_multiplier': noise_multiplier if private else 0.0,
      'clients_per_round': clients_per_round,
      'rounds': rounds,
      **({'rounds_per_pass': rounds_per_pass(clients_per_round=clients_per_round,
                                             population_size=population_size),
          'max_participations': -(-rounds // rounds_per_pass(
              clients_per_round=clients_per_round, population_size=population_size))}
         if sampling == 'shuffle' else {}),
      **({'secure_aggregation': (
          "TFF SecureSumFactory (32-bit quantized secure sum of the clipped updates); "
          "TFF's local runtime simulates the secure sum, so no cryptography ran here")}
         if secure_sum else {}),
      **({'compression': (
          f'Updates uniformly quantized to {compression_bits} bits per coordinate '
          "(TFF EncodedSumFactory) after clipping; the accountant covers how much "
          'quantization can enlarge a clipped update (sensitivity_factor)' if private
          else f'Updates uniformly quantized to {compression_bits} bits per coordinate '
          '(TFF EncodedSumFactory)')} if compression_bits else {}),
      **({'sensitivity_factor': sensitivity_factor,
          'accounted_noise_multiplier': accounted_noise}
         if private and (secure_sum or compression_bits) else {}),
      **({'secure_aggregation': (
          f"TFF modular secure sum of {distributed['bits']}-bit integers; TFF's local "
          'runtime simulates it, so no cryptography ran here'),
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
          'distributed_parameters': dict(distributed)} if is_distributed else {}),
      **({'dropout': dropout} if dropout else {}),
      **({'opted_out_users': opted_out_users} if opted_out_users else {}),
      'notes': (
          sampling_note + ' Training metrics (train_loss) are simulation diagnostics '
          'outside the guarantee. Evaluation uses held-out users only.'
          if private
          else 'Non-private reference run (plain FedAvg): no privacy guarantee.'
      ) + (' ' + dropout_note(dropout, sampling) if dropout and private else '') + (
          f' {opted_out_users} users opted out: they are never sampled and their data '
          'is never used; population_size counts only the users who can be sampled.'
          if opted_out_users else ''),
  }
