"""Privacy accounting for user-level DP federated averaging (dp_accounting only).

Each round of DP-FedAvg (McMahan et al. 2018, "Learning Differentially Private Recurrent
Language Models") includes every training user independently with probability
`q = clients_per_round / population_size` (Poisson sampling) and adds Gaussian noise
with standard deviation `noise_multiplier * clip` to the sum of clipped updates. One round
is therefore `PoissonSampledDpEvent(q, GaussianDpEvent(noise_multiplier))`, and `T` rounds
are that event self-composed `T` times. For adaptive clipping (Andrew et al. 2021,
"Differentially Private Learning with Adaptive Clipping") TFF's
`DifferentiallyPrivateFactory.gaussian_adaptive` splits the *total* noise multiplier
between the update and the clipped-count query, so the same event describes it.

The accountant is dp_accounting's RDP accountant under add-or-remove-one-user neighbours;
the unit of privacy is one user's whole data. This module imports neither TensorFlow nor
TFF, so privacy questions are answered at once.
"""

from __future__ import annotations

import math
from typing import Any

import dp_accounting

DEFAULT_DELTA = 1e-5
ACCOUNTANTS = ('rdp',)
UNIT_OF_PRIVACY = "one user's whole data (user-level DP)"
NEIGHBORING_RELATION = 'add or remove one user'
SAMPLING = 'poisson'


def _check(
    *, noise_multiplier: float, sampling_probability: float, rounds: int, delta: float
) -> None:
  if not noise_multiplier >= 0 or not math.isfinite(noise_multiplier):
    raise ValueError(
        f'noise_multiplier must be a finite number >= 0. Found {noise_multiplier}.')
  if not 0 < sampling_probability <= 1:
    raise ValueError(
        'sampling probability (clients_per_round / population) must be in (0, 1]. '
        f'Found {sampling_probability}.')
  if not isinstance(rounds, int) or rounds < 0:
    raise ValueError(f'rounds must be an integer >= 0. Found {rounds!r}.')
  if not 0 < delta < 1:
    raise ValueError(f'delta must be in (0, 1). Found {delta}.')


def sampling_probability(*, clients_per_round: float, population_size: int) -> float:
  """q for Poisson sampling with an expected cohort of `clients_per_round`."""
  if population_size < 1:
    raise ValueError(f'population size must be >= 1. Found {population_size}.')
  if not 0 < clients_per_round <= population_size:
    raise ValueError(
        f'clients_per_round must be in (0, population size = {population_size}]. '
        f'Found {clients_per_round}.')
  return clients_per_round / population_size


def training_event(
    *, noise_multiplier: float, sampling_probability: float, rounds: int
) -> dp_accounting.DpEvent:
  """The DpEvent of `rounds` Poisson-sampled Gaussian rounds."""
  return dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(
          sampling_probability, dp_accounting.GaussianDpEvent(noise_multiplier)
      ),
      rounds,
  )


def epsilon_spent(
    *,
    noise_multiplier: float,
    sampling_probability: float,
    rounds: int,
    delta: float = DEFAULT_DELTA,
) -> float:
  """Epsilon at `delta` after `rounds` rounds (0 for none, inf without noise)."""
  _check(
      noise_multiplier=noise_multiplier,
      sampling_probability=sampling_probability,
      rounds=rounds,
      delta=delta,
  )
  if rounds == 0:
    return 0.0
  if noise_multiplier == 0:
    return math.inf
  accountant = dp_accounting.rdp.RdpAccountant()
  accountant.compose(
      training_event(
          noise_multiplier=noise_multiplier,
          sampling_probability=sampling_probability,
          rounds=rounds,
      )
  )
  return float(accountant.get_epsilon(delta))


def calibrate_noise_multiplier(
    *,
    target_epsilon: float,
    sampling_probability: float,
    rounds: int,
    delta: float = DEFAULT_DELTA,
) -> float:
  """The smallest noise multiplier whose `rounds` rounds spend <= target_epsilon."""
  if not target_epsilon > 0 or not math.isfinite(target_epsilon):
    raise ValueError(f'target_epsilon must be a finite number > 0. Found {target_epsilon}.')
  _check(
      noise_multiplier=1.0,
      sampling_probability=sampling_probability,
      rounds=rounds,
      delta=delta,
  )
  if rounds == 0:
    raise ValueError('Cannot calibrate noise for 0 rounds.')
  return float(
      dp_accounting.calibrate_dp_mechanism(
          dp_accounting.rdp.RdpAccountant,
          lambda z: training_event(
              noise_multiplier=z,
              sampling_probability=sampling_probability,
              rounds=rounds,
          ),
          target_epsilon,
          delta,
          bracket_interval=dp_accounting.LowerEndpointAndGuess(1e-3, 1.0),
          tol=1e-4,
      )
  )


def privacy_statement(
    *,
    mechanism: str,
    noise_multiplier: float,
    clients_per_round: float,
    population_size: int,
    rounds: int,
    delta: float = DEFAULT_DELTA,
) -> dict[str, Any]:
  """What was protected, how, and at what (epsilon, delta): the `privacy.json` body."""
  q = sampling_probability(
      clients_per_round=clients_per_round, population_size=population_size
  )
  private = mechanism != 'none'
  epsilon = (
      epsilon_spent(
          noise_multiplier=noise_multiplier,
          sampling_probability=q,
          rounds=rounds,
          delta=delta,
      )
      if private
      else math.inf
  )
  return {
      'epsilon': epsilon if math.isfinite(epsilon) else None,
      'delta': delta,
      'differentially_private': private and math.isfinite(epsilon),
      'mechanism': mechanism,
      'accountant': 'rdp',
      'neighboring_relation': NEIGHBORING_RELATION,
      'unit_of_privacy': UNIT_OF_PRIVACY,
      'sampling': SAMPLING,
      'sampling_probability': q,
      'noise_multiplier': noise_multiplier if private else 0.0,
      'clients_per_round': clients_per_round,
      'population_size': population_size,
      'rounds': rounds,
      'notes': (
          'Each round samples every training user independently with probability '
          'sampling_probability (Poisson), which is what the accountant assumes. '
          'Training metrics (train_loss) are simulation diagnostics outside the '
          'guarantee. Evaluation uses held-out users only.'
          if private
          else 'Non-private reference run (plain FedAvg): no privacy guarantee.'
      ),
  }
