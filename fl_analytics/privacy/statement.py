"""Privacy accounting for user-level DP federated averaging (dp_accounting only).

A round of DP-FedAvg (McMahan et al. 2018, "Learning Differentially Private Recurrent
Language Models") clips each sampled user's update and adds noise to their sum. What
`T` rounds are, as a dp_accounting event, is the mechanism's to say
(`fl_analytics.privacy.mechanisms`: a sampled Gaussian for fixed and adaptive clipping, one tree
per pass for DP-FTRL, a sampled Skellam event for distributed DP), from how the cohorts
were drawn (`fl_analytics.privacy.sampling`: Poisson, fixed-size or cyclic passes, each with its
neighbouring relation). This module knows no mechanism or scheme by name: it refuses
what the accountant cannot analyse (`check_accounting`), composes the event with
dp_accounting's RDP or PLD accountant (`epsilon`; `fl_analytics.privacy.accounting` adds the
events dp_accounting does not know), calibrates the noise with dp_accounting's
`calibrate_dp_mechanism` (`calibrate`), and writes the statement (`statement`): what
is protected, how, and at what (epsilon, delta).

Every function reads one `mechanisms.DpSettings`, the run's resolved settings; the
keyword functions (`epsilon_spent`, `calibrate_noise_multiplier`, `privacy_statement`,
...) build it for callers that have loose values (the privacy CLI, tests).

The unit of privacy is one user's whole data. This module imports neither TensorFlow
nor TFF, so privacy questions are answered at once (`experiments/privacy.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Optional, Sequence

import dp_accounting
import numpy as np

from fl_analytics.privacy import accounting
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import sampling as sampling_lib
from fl_analytics.privacy import secagg
from fl_analytics.privacy.mechanisms import distributed as distributed_mechanism

DEFAULT_DELTA = 1e-5
ACCOUNTANTS = ('rdp', 'pld')
SAMPLINGS = tuple(sampling_lib.SCHEMES)
UNIT_OF_PRIVACY = "one user's whole data (user-level DP)"
DpSettings = mechanisms.DpSettings


def sampling_probability(*, clients_per_round: float, population_size: int) -> float:
  """The share of the population sampled per round (expected share for Poisson)."""
  return sampling_lib.sampling_probability(clients_per_round=clients_per_round,
                                           population_size=population_size)


def check_accounting(*, accountant: str, sampling: str, mechanism: str = '') -> None:
  """Refuses combinations the accountant cannot analyse, naming what is allowed.

  The mechanism (when given) says which sampling schemes and accountants analyse it;
  the scheme says which accountants analyse it.
  """
  if accountant not in ACCOUNTANTS:
    raise ValueError(
        f'accountant must be one of {", ".join(ACCOUNTANTS)}. Found {accountant!r}.')
  scheme = sampling_lib.get(sampling)
  m = mechanisms.get(mechanism) if mechanism else None
  if m is not None and m.private and (sampling not in m.samplings
                                      or accountant not in m.accountants):
    others = [n.name for n in mechanisms.REGISTRY.values()
              if n.private and sampling in n.samplings]
    raise ValueError(
        f'dp.mechanism={m.name} ({m.title}) is accounted for sampling='
        f'{" or ".join(m.samplings)} with the {" or ".join(m.accountants)} accountant '
        f'only (found sampling={sampling}, accountant={accountant}).'
        + (f' {m.sampling_refusal}' if sampling not in m.samplings
           and m.sampling_refusal else '')
        + (f' sampling={sampling} is accounted only for dp.mechanism='
           f'{" or ".join(others)}.' if sampling not in m.samplings and others else '')
        + (f' {m.accountant_refusal}' if accountant not in m.accountants
           and m.accountant_refusal else ''))
  if accountant not in scheme.accountants:
    raise ValueError(scheme.pld_refusal)


# Above this, RDP's arithmetic fails in dp_accounting 0.4.3 ("Renyi divergence cannot
# be negative"); epsilon has long stopped falling by then (about 0.0035 at delta 1e-5
# from noise multiplier 1e3 on, with 40 rounds of 50 of 776 users): the accountant's
# largest order bounds it from below.
MAX_NOISE_MULTIPLIER = 1e4
# Below this, the accountants' arithmetic fails (ZeroDivisionError in RDP near 1e-300,
# OverflowError in PLD); epsilon is above 1e13 there (50 of 800 users, 40 rounds).
MIN_NOISE_MULTIPLIER = 1e-6
# Calibration searches noise multipliers from here up to MAX_NOISE_MULTIPLIER.
MIN_CALIBRATED_NOISE_MULTIPLIER = 1e-2


def check_budget(*, delta: float, population_size: Optional[int] = None,
                 target_epsilon: Optional[float] = None,
                 noise_multiplier: Optional[float] = None, prefix: str = '') -> None:
  """Raises ValueError for budget settings no statement can be made for.

  One validation for `train.py` (`prefix='dp.'`, config keys) and the privacy CLI
  (`prefix='--'`, flags): delta in (0, 1) and below 1 / population size (a larger delta
  allows revealing some user outright), a finite positive target epsilon, a noise
  multiplier in [MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER] (0 is no privacy at all:
  use the non-private reference).
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
      MIN_NOISE_MULTIPLIER <= noise_multiplier <= MAX_NOISE_MULTIPLIER
      and math.isfinite(noise_multiplier)):
    raise ValueError(
        f'{prefix}noise_multiplier must be in [{MIN_NOISE_MULTIPLIER:g}, '
        f'{MAX_NOISE_MULTIPLIER:g}]. Found {noise_multiplier:g}. 0 adds no noise (no '
        'privacy: use the non-private reference); outside the range the accountants\' '
        'arithmetic fails, and epsilon stops changing long before its ends.')


def make_accountant(*, accountant: str, sampling: str,
                    orders: Optional[Sequence[float]] = None
                    ) -> dp_accounting.PrivacyAccountant:
  """A fresh accountant for `sampling`'s neighbouring relation (`orders`: RDP's)."""
  check_accounting(accountant=accountant, sampling=sampling)
  if accountant == 'pld':
    # 1e-3 instead of the default 1e-4: 20x faster here, epsilon within 1e-4 of it,
    # and still a pessimistic (upper-bound) discretization.
    return dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
  return accounting.RdpAccountant(
      orders=None if orders is None else np.array(orders, dtype=float),
      neighboring_relation=sampling_lib.get(sampling).relation)


def _check_common(*, noise_multiplier: float, rounds: int, delta: float) -> None:
  if not noise_multiplier >= 0 or not math.isfinite(noise_multiplier):
    raise ValueError(
        f'noise_multiplier must be a finite number >= 0. Found {noise_multiplier}.')
  if not isinstance(rounds, int) or rounds < 0:
    raise ValueError(f'rounds must be an integer >= 0. Found {rounds!r}.')
  if not 0 < delta < 1:
    raise ValueError(f'delta must be in (0, 1). Found {delta}.')


def _event_epsilon(event: dp_accounting.DpEvent, *, accountant: str, sampling: str,
                   orders: Optional[tuple], delta: float) -> float:
  """Epsilon at `delta` of `event` under `sampling`'s relation."""
  if accountant == 'rdp' and isinstance(event, dp_accounting.SelfComposedDpEvent):
    # T identical rounds: T * RDP(round).
    orders_vec, rdp = _one_round_rdp(event.event, sampling, orders)
    return float(accounting.compute_epsilon(orders_vec, event.count * rdp, delta)[0])
  acc = make_accountant(accountant=accountant, sampling=sampling, orders=orders)
  acc.compose(event)
  return float(acc.get_epsilon(delta))


@functools.lru_cache(maxsize=64)
def _one_round_rdp(event: dp_accounting.DpEvent, sampling: str,
                   orders: Optional[tuple]):
  """RDP of one round at the accountant's orders, computed once per event.

  `SelfComposedDpEvent(e, T)` costs RDP(e) * T; RdpAccountant recomputes RDP(e) on
  every call (0.6 s for sampling without replacement), which would sit on the round
  loop. The orders and vector are read from an accountant that composed one round;
  `privacy_test` checks the result against a fresh accountant composing T rounds.
  """
  acc = make_accountant(accountant='rdp', sampling=sampling, orders=orders)
  acc.compose(event)
  return np.asarray(acc._orders), np.array(acc._rdp)  # pylint: disable=protected-access


def epsilon(settings: DpSettings, rounds: int) -> float:
  """Epsilon at `settings.delta` after `rounds` rounds (0 for none; inf without noise or
  without a private mechanism)."""
  m = mechanisms.get(settings.mechanism)
  check_accounting(accountant=settings.accountant, sampling=settings.sampling,
                   mechanism=settings.mechanism)
  _check_common(noise_multiplier=settings.noise_multiplier, rounds=rounds,
                delta=settings.delta)
  if not m.private:
    return math.inf
  # Built even when not composed: it validates the cohort against the population.
  event = m.event(settings, rounds)
  if rounds == 0:
    return 0.0
  if settings.noise_multiplier == 0:
    return math.inf
  return _event_epsilon(event, accountant=settings.accountant,
                        sampling=settings.sampling, orders=m.rdp_orders,
                        delta=settings.delta)


def participation_epsilon(settings: DpSettings) -> Optional[float]:
  """What a test that knows when a user took part is held to: under a sampled scheme,
  one round of the mechanism with the user in it, without sampling amplification (the
  scheme's event at a cohort of the whole population, which the canary audit's
  first-insertion statistic is compared with); None under a scheme without
  amplification, whose claim already holds whoever knows the participations."""
  if settings.scheme.round_event is None or not mechanisms.get(settings.mechanism).private:
    return None
  cohort = math.ceil(settings.clients_per_round)
  return epsilon(dataclasses.replace(settings, population_size=cohort,
                                     clients_per_round=float(cohort)), 1)


def calibrate(settings: DpSettings, *, rounds: int, target_epsilon: float) -> float:
  """The smallest noise multiplier whose `rounds` rounds spend <= target_epsilon.

  The accountant sees `noise_multiplier / sensitivity_factor`: that is calibrated, and
  the noise multiplier returned is it times the factor. Every candidate goes through
  the mechanism's `resolve` (distributed: the scaled parameters TFF picks for it).
  """
  m = mechanisms.get(settings.mechanism)
  check_accounting(accountant=settings.accountant, sampling=settings.sampling,
                   mechanism=settings.mechanism)
  if not m.private:
    raise ValueError(f'dp.mechanism={m.name} adds no noise to calibrate.')
  accounted = dataclasses.replace(settings, sensitivity_factor=1.0)

  def make_event(z):
    return m.event(m.resolve(dataclasses.replace(accounted, noise_multiplier=z)), rounds)

  return settings.sensitivity_factor * calibrate_event(
      make_event, target_epsilon=target_epsilon, rounds=rounds, delta=settings.delta,
      accountant=settings.accountant, sampling=settings.sampling, orders=m.rdp_orders)


def calibrate_event(make_event: Callable[[float], dp_accounting.DpEvent], *,
                    target_epsilon: float, rounds: int, delta: float, accountant: str,
                    sampling: str, orders: Optional[tuple] = None) -> float:
  """The smallest noise multiplier z whose `make_event(z)` spends <= target_epsilon.

  dp_accounting's `calibrate_dp_mechanism`, in [MIN_CALIBRATED_NOISE_MULTIPLIER,
  MAX_NOISE_MULTIPLIER]; a target out of that range is refused, saying which end.
  """
  if not target_epsilon > 0 or not math.isfinite(target_epsilon):
    raise ValueError(f'target_epsilon must be a finite number > 0. Found {target_epsilon}.')
  _check_common(noise_multiplier=1.0, rounds=rounds, delta=delta)
  check_accounting(accountant=accountant, sampling=sampling)
  if rounds == 0:
    raise ValueError('Cannot calibrate noise for 0 rounds.')

  def spent(z, by):
    return _event_epsilon(make_event(z), accountant=by, sampling=sampling,
                          orders=orders, delta=delta)

  # The ends of the search. At the small end RDP stands in for PLD (PLD is slow at tiny
  # noise, and never reports more than RDP, so a target RDP meets there PLD meets too);
  # at the large end the run's own accountant answers (fast there).
  for z, end_accountant, reachable, advice in (
      (MIN_CALIBRATED_NOISE_MULTIPLIER, 'rdp', lambda e: e > target_epsilon,
       'Such a budget protects nothing; choose a smaller target.'),
      (MAX_NOISE_MULTIPLIER, accountant, lambda e: e <= target_epsilon,
       'No noise reaches it; choose a larger target, fewer rounds or a smaller cohort.')):
    at_end = spent(z, end_accountant)
    if not reachable(at_end):
      raise ValueError(
          f'target_epsilon={target_epsilon:g} is out of reach: noise multiplier {z:g}, '
          f'an end of the calibrated range [{MIN_CALIBRATED_NOISE_MULTIPLIER:g}, '
          f'{MAX_NOISE_MULTIPLIER:g}], spends {at_end:.3g} at delta {delta:g} over '
          f'{rounds} rounds. {advice}')

  bracket = dp_accounting.LowerEndpointAndGuess(1e-2, 1.0)
  if accountant == 'pld':
    # PLD is slow for tiny noise (a wide privacy loss support), which the default
    # bracket search probes. RDP never reports less than PLD, so the RDP-calibrated
    # noise spends at most the target under PLD: search below it.
    upper = calibrate_event(make_event, target_epsilon=target_epsilon, rounds=rounds,
                            delta=delta, accountant='rdp', sampling=sampling,
                            orders=orders)
    lower = upper / 2
    while lower > 1e-2 and spent(lower, 'pld') <= target_epsilon:
      lower /= 2
    bracket = dp_accounting.ExplicitBracketInterval(lower, upper)
  return float(
      dp_accounting.calibrate_dp_mechanism(
          lambda: make_accountant(accountant=accountant, sampling=sampling,
                                  orders=orders),
          make_event,
          target_epsilon,
          delta,
          bracket_interval=bracket,
          tol=1e-4,
      )
  )


def _noise_settings(*, noise_multiplier: float, clients_per_round: float,
                    population_size: int, delta: float, sampling: str,
                    accountant: str) -> DpSettings:
  """The settings of the plain noisy sum query under `sampling` (the first private
  mechanism of the registry accounted for it without parameters of its own: fixed
  clipping, or tree aggregation for cyclic passes)."""
  check_accounting(accountant=accountant, sampling=sampling)
  mechanism = next(m.name for m in mechanisms.REGISTRY.values()
                   if m.private and sampling in m.samplings and m.rdp_orders is None)
  return DpSettings(mechanism=mechanism, noise_multiplier=noise_multiplier,
                    clients_per_round=clients_per_round,
                    population_size=population_size, delta=delta, sampling=sampling,
                    accountant=accountant)


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
  """Epsilon at `delta` after `rounds` rounds of the noisy sum query under `sampling`
  (Gaussian, sampled; tree aggregation for `shuffle`): 0 for none, inf without noise."""
  return epsilon(_noise_settings(
      noise_multiplier=noise_multiplier, clients_per_round=clients_per_round,
      population_size=population_size, delta=delta, sampling=sampling,
      accountant=accountant), rounds)


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
  return calibrate(_noise_settings(
      noise_multiplier=1.0, clients_per_round=clients_per_round,
      population_size=population_size, delta=delta, sampling=sampling,
      accountant=accountant), rounds=rounds, target_epsilon=target_epsilon)


def distributed_epsilon(*, params: dict, clients_per_round: int, population_size: int,
                        rounds: int, delta: float = DEFAULT_DELTA) -> float:
  """Epsilon at `delta` after `rounds` rounds of distributed Skellam with the query's
  scaled parameters `params` (`mechanisms.distributed`)."""
  return epsilon(DpSettings(
      mechanism='distributed', noise_multiplier=1.0, derived=params,
      clients_per_round=clients_per_round, population_size=population_size,
      delta=delta, sampling='fixed_size'), rounds)


def calibrate_distributed(*, target_epsilon: float, params_fn, clients_per_round: int,
                          population_size: int, rounds: int,
                          delta: float = DEFAULT_DELTA) -> float:
  """The smallest noise multiplier z whose rounds spend <= target_epsilon, where
  `params_fn(z)` gives the query's scaled parameters for z (they depend on z through
  the scale factor TFF picks)."""
  m = mechanisms.get('distributed')
  return calibrate_event(
      lambda z: distributed_mechanism.training_event(
          params_fn(z), clients_per_round=clients_per_round,
          population_size=population_size, rounds=rounds),
      target_epsilon=target_epsilon, rounds=rounds, delta=delta, accountant='rdp',
      sampling='fixed_size', orders=m.rdp_orders)


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


def sensitivity_factor(*, secure_sum: bool, compression_bits: int,
                       compression_threshold: int, tensor_sizes: Sequence[int]) -> float:
  """How much a secure sum's or compression's rounding can grow a clipped update's norm
  (`DpSettings.sensitivity_factor`), for a model of `tensor_sizes`."""
  if secure_sum:
    return secure_sum_sensitivity_factor(sum(tensor_sizes))
  if compression_bits:
    return compression_sensitivity_factor(bits=compression_bits, tensor_sizes=tensor_sizes,
                                          threshold=compression_threshold)
  return 1.0


def dropout_note(dropout: float, sampling: str) -> str:
  """Why the accountant's epsilon still holds when sampled clients fail to report.

  Dropout is independent of the data and leaves the clip, the noise and its
  denominator unchanged; only contributions go missing.
  """
  if sampling not in sampling_lib.SCHEMES:
    raise ValueError(f'No dropout analysis for sampling={sampling!r}.')
  return (f'Each sampled client fails to report with probability {dropout:g}, '
          'independently of the data; the round uses the others, with the same clip, '
          'noise and denominator, and the epsilon still holds: '
          + sampling_lib.get(sampling).dropout_reason + '.')


# What a DP training run writes that the (epsilon, delta) guarantee does not cover,
# and why; `privacy.json:not_covered` lists it (docs/privacy.md).
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


def randomness_caveats(*, reproducible_noise: bool, reproducible_sampling: bool = True,
                       clock_seeded_noise: str = '') -> list[str]:
  """Why a simulated run's guarantee holds only in simulation, one reason each.

  The guarantee assumes the adversary does not know the mechanism's randomness. With
  `dp.reproducible_sampling` a run draws its cohorts (and dropout) from `seed`, which
  `config.json` records; with `dp.reproducible_noise` it draws the noise from `seed`
  too, and whoever knows the seed can subtract it; a mechanism whose library seeds
  its noise from the clock (`clock_seeded_noise`, `Mechanism.clock_seeded_noise`:
  why) can be regenerated whatever the config says. Empty: none of these.
  """
  caveats = []
  if clock_seeded_noise:
    caveats.append(f'the DP noise is seeded from the clock: {clock_seeded_noise}')
  if reproducible_sampling:
    caveats.append(
        'cohort sampling and dropout are drawn from seed, recorded in config.json: '
        'whoever reads it knows who took part in every round, so the sampling '
        'amplification does not hold against them (dp.reproducible_sampling=True)')
  if reproducible_noise and not clock_seeded_noise:
    caveats.append('the DP noise is drawn from seed (dp.reproducible_noise=True): '
                   'whoever knows the seed can regenerate the noise and remove it')
  return caveats


def noise_can_be_regenerated(*, reproducible_noise: bool, clock_seeded_noise: str) -> bool:
  """Whether the noise itself can be regenerated (from the recorded seed or from the
  clock): then the release is not differentially private against whoever can. Known
  cohorts alone only lose the amplification."""
  return reproducible_noise or bool(clock_seeded_noise)


# What population_size counts, and how that differs from runs before 2026-11-29.
POPULATION_NOTE = (
    'population_size counts every enrolled user who can be sampled, fixed by the config '
    '(the training users of the split, after opt-outs), whether or not the user has a '
    'training example: a sampled user without one sends a zero update. Runs before '
    '2026-11-29 left training users without examples out of the population, so their '
    'population_size (and sampling probability) depended on the data.')


NOISE_REGENERATED_NOTE = (
    'false: the DP noise can be regenerated (simulation_caveats), so against whoever '
    'can, the release is not private; epsilon is what this mechanism gives when its '
    'noise is secret (dp.reproducible_noise=False with a mechanism whose noise is not '
    'seeded from the clock)')


def guarantee_fields(*, private: bool, epsilon: Optional[float], delta: float,
                     mechanism: str, accountant: str, neighboring_relation: str,
                     population_size: int, caveats: Sequence[str],
                     not_covered: Sequence[dict],
                     noise_regenerable: bool = False) -> dict[str, Any]:
  """The fields every `privacy.json` starts with, training's and analytics' alike.

  What is protected and how (`unit_of_privacy`, `neighboring_relation`, `mechanism`,
  `accountant`), at what (`epsilon`, `delta`; epsilon None when there is no single
  one), among whom (`population_size`), whether only in simulation
  (`simulation_only`, `simulation_caveats`) and what the guarantee leaves out
  (`not_covered`). The last three only for private releases.

  `differentially_private` is false when the noise can be regenerated
  (`noise_regenerable`, `noise_can_be_regenerated`): the epsilon is then what the
  mechanism would give with secret noise, which `differentially_private_note` says.
  """
  regenerated = private and noise_regenerable
  return {
      'epsilon': epsilon if epsilon is None or math.isfinite(epsilon) else None,
      'delta': delta,
      'differentially_private': (private and not regenerated
                                 and (epsilon is None or math.isfinite(epsilon))),
      **({'differentially_private_note': NOISE_REGENERATED_NOTE} if regenerated else {}),
      **({'simulation_only': bool(caveats), 'simulation_caveats': list(caveats),
          'not_covered': [dict(item) for item in not_covered]} if private else {}),
      'mechanism': mechanism,
      'accountant': accountant,
      'neighboring_relation': neighboring_relation,
      'unit_of_privacy': UNIT_OF_PRIVACY,
      'population_size': population_size,
  }


def statement(settings: DpSettings, rounds: int) -> dict[str, Any]:
  """What was protected, how, and at what (epsilon, delta): the `privacy.json` body.

  The guarantee's fields (`guarantee_fields`), the sampling, the noise and the rounds,
  what the aggregation adds (secure sum, compression: `sensitivity_factor`), the
  mechanism's own fields (distributed: its analysis, assumptions and parameters),
  dropout and opted-out users, and `notes` in words.

  `simulation_only` says whether the guarantee holds only in simulation (its
  randomness can be reproduced from the published seed: `reproducible_noise`,
  `reproducible_sampling`; `simulation_caveats` says how, `randomness_caveats`);
  `not_covered` lists the run's outputs the guarantee does not cover (`NOT_COVERED`).
  """
  s = settings
  if not s.sensitivity_factor >= 1:
    raise ValueError(f'sensitivity_factor must be >= 1. Found {s.sensitivity_factor}.')
  m = mechanisms.get(s.mechanism)
  scheme = sampling_lib.get(s.sampling)
  q = sampling_probability(clients_per_round=s.clients_per_round,
                           population_size=s.population_size)
  eps = epsilon(s, rounds)
  clock = m.clock_seeded_noise if m.private else ''
  caveats = randomness_caveats(reproducible_noise=s.reproducible_noise,
                               reproducible_sampling=s.reproducible_sampling,
                               clock_seeded_noise=clock)
  own, sampling_note = m.statement(s, rounds) if m.private else ({}, '')
  return {
      **guarantee_fields(
          private=m.private, epsilon=eps, delta=s.delta, mechanism=s.mechanism,
          accountant=s.accountant, neighboring_relation=scheme.neighboring_relation,
          population_size=s.population_size, caveats=caveats, not_covered=NOT_COVERED,
          noise_regenerable=noise_can_be_regenerated(
              reproducible_noise=s.reproducible_noise, clock_seeded_noise=clock)),
      'population': POPULATION_NOTE,
      'sampling': s.sampling,
      'sampling_probability': q,
      'noise_multiplier': s.noise_multiplier if m.private else 0.0,
      'clients_per_round': s.clients_per_round,
      'rounds': rounds,
      **(scheme.statement_fields(s.clients_per_round, s.population_size, rounds,
                                 s.participation)
         if scheme.statement_fields else {}),
      **_aggregation_fields(s, private=m.private),
      **own,
      **({'dropout': s.dropout} if s.dropout else {}),
      **({'opted_out_users': s.opted_out_users} if s.opted_out_users else {}),
      **({'audit_canaries': s.canaries} if s.canaries else {}),
      'notes': _notes(s, sampling_note, private=m.private),
  }


def _aggregation_fields(s: DpSettings, *, private: bool) -> dict[str, Any]:
  """What the secure sum and compression add to the statement."""
  fields = {}
  if s.secure_sum:
    fields['secure_aggregation'] = (
        'TFF SecureSumFactory (32-bit quantized secure sum of the clipped updates); '
        + secagg.describe(s.secure_protocol))
  if s.compression_bits:
    fields['compression'] = (
        f'Updates uniformly quantized to {s.compression_bits} bits per coordinate '
        "(TFF EncodedSumFactory) after clipping; the accountant covers how much "
        'quantization can enlarge a clipped update (sensitivity_factor)' if private
        else f'Updates uniformly quantized to {s.compression_bits} bits per '
        'coordinate (TFF EncodedSumFactory)')
  if private and (s.secure_sum or s.compression_bits):
    fields.update(sensitivity_factor=s.sensitivity_factor,
                  accounted_noise_multiplier=s.accounted_noise_multiplier)
  return fields


def _notes(s: DpSettings, sampling_note: str, *, private: bool) -> str:
  """The statement's `notes`: its sampling, dropout, opt-out and canaries in words."""
  notes = (sampling_note + ' Training metrics (train_loss) are simulation diagnostics '
           'outside the guarantee. Evaluation uses held-out users only.' if private
           else 'Non-private reference run (plain FedAvg): no privacy guarantee.')
  if s.dropout and private:
    notes += ' ' + dropout_note(s.dropout, s.sampling)
  if s.opted_out_users:
    notes += (f' {s.opted_out_users} users opted out: they are never sampled and their '
              'data is never used; population_size counts only the users who can be '
              'sampled.')
  if s.canaries:
    notes += (f' population_size includes {s.canaries} audit canaries: clients that are '
              'sampled, clipped and noised like users but send a fixed random direction '
              '(fl_analytics.privacy.canaries, audit.json); the accountant counts them, '
              'so the sampling probability is that of users among users and canaries.')
  return notes


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
    derived: Optional[dict] = None,
    compression_bits: int = 0,
    dropout: float = 0.0,
    opted_out_users: int = 0,
    reproducible_noise: bool = False,
    reproducible_sampling: bool = False,
) -> dict[str, Any]:
  """`statement` from loose values (see `mechanisms.DpSettings` for each)."""
  return statement(DpSettings(
      mechanism=mechanism, noise_multiplier=noise_multiplier,
      clients_per_round=clients_per_round, population_size=population_size,
      delta=delta, sampling=sampling, accountant=accountant,
      sensitivity_factor=sensitivity_factor, secure_sum=secure_sum,
      derived=derived, compression_bits=compression_bits, dropout=dropout,
      opted_out_users=opted_out_users, reproducible_noise=reproducible_noise,
      reproducible_sampling=reproducible_sampling), rounds)
