"""Client sampling that matches the accountant: Poisson sampling, seeded per round.

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
