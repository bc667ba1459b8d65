"""Client sampling that matches the accountant, seeded per round: Poisson or fixed-size.

Each of the `population_size` users joins round `t` independently with probability
`q`; the cohort size varies around `q * population_size`. The draw of round `t` depends
only on `(seed, t)`, so a resumed run samples exactly the cohorts of an uninterrupted one.
"""

from __future__ import annotations

import numpy as np


def poisson_cohort(
    *, population_size: int, sampling_probability: float, seed: int, round_num: int
) -> np.ndarray:
  """Sorted indices of the users sampled in round `round_num` (1-based)."""
  if not 0 < sampling_probability <= 1:
    raise ValueError(
        f'sampling_probability must be in (0, 1]. Found {sampling_probability}.')
  rng = np.random.default_rng([seed, 0xC0407, round_num])
  return np.flatnonzero(rng.random(population_size) < sampling_probability)


def fixed_size_cohort(
    *, population_size: int, cohort_size: int, seed: int, round_num: int
) -> np.ndarray:
  """Sorted indices of exactly `cohort_size` users, uniformly without replacement."""
  if not 0 < cohort_size <= population_size:
    raise ValueError(
        f'cohort size must be in (0, {population_size}]. Found {cohort_size}.')
  rng = np.random.default_rng([seed, 0xF1CED, round_num])
  return np.sort(rng.choice(population_size, size=cohort_size, replace=False))


def shuffle_cohort(
    *, population_size: int, cohort_size: int, seed: int, round_num: int
) -> np.ndarray:
  """Cyclic passes over one seeded shuffle of the users (DP-FTRL's participation).

  The users are shuffled once; pass after pass, round `r` takes the next block of
  `cohort_size` of them. A pass has `population_size // cohort_size` rounds; the
  `population_size % cohort_size` users after the last full block never take part.
  Each user takes part once per pass, and its participations are exactly one pass
  apart, which is what the DP-FTRL accounting assumes.
  """
  if not 0 < cohort_size <= population_size:
    raise ValueError(
        f'cohort size must be in (0, {population_size}]. Found {cohort_size}.')
  order = np.random.default_rng([seed, 0x5F1E]).permutation(population_size)
  block = (round_num - 1) % (population_size // cohort_size)
  return np.sort(order[block * cohort_size:(block + 1) * cohort_size])


def cohort(
    *, sampling: str, population_size: int, clients_per_round: float, seed: int,
    round_num: int,
) -> np.ndarray:
  """The cohort of round `round_num` under `sampling` (`poisson` or `fixed_size`).

  `clients_per_round` is the expected cohort for Poisson and the exact one for
  fixed-size sampling; the accountant reads the same value (`fl_analytics.privacy`).
  """
  if sampling == 'poisson':
    return poisson_cohort(
        population_size=population_size,
        sampling_probability=clients_per_round / population_size,
        seed=seed, round_num=round_num)
  if sampling == 'fixed_size':
    return fixed_size_cohort(population_size=population_size,
                             cohort_size=int(clients_per_round), seed=seed,
                             round_num=round_num)
  if sampling == 'shuffle':
    return shuffle_cohort(population_size=population_size,
                          cohort_size=int(clients_per_round), seed=seed,
                          round_num=round_num)
  raise ValueError(
      f"sampling must be 'poisson', 'fixed_size' or 'shuffle'. Found {sampling!r}.")
