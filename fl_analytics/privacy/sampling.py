"""Client sampling schemes: how a round's cohort is drawn and what the accountant assumes.

A `Scheme` is one value of `sampling`: how it draws the cohort of a round (seeded per
round: the draw of round `t` depends only on `(seed, t)`, so a resumed run samples
exactly the cohorts of an uninterrupted one), the neighbouring relation it is accounted
under, the accountants that analyse it, how a round's mechanism event is sampled
(`sampled_event`: dp_accounting's sampling events), and why dropout keeps its
guarantee. `SCHEMES` is the registry; the accountant (`fl_analytics.privacy.statement`), the
mechanisms and the round ask it.

* ``poisson``: every training user joins independently with probability
  `q = clients_per_round / population_size` (the cohort size varies around
  `clients_per_round`): `PoissonSampledDpEvent(q, event)`, add-or-remove-one-user
  neighbours, RDP and PLD.
* ``fixed_size``: exactly `clients_per_round` users, uniformly without replacement:
  `SampledWithoutReplacementDpEvent(N, m, event)` under replace-one-user neighbours
  (Wang, Balle, Kasiviswanathan 2019), so the mechanism's event is built for twice the
  clip (`sensitivity` 2). RDP only: dp_accounting 0.4.3 has no PLD for it.
* ``shuffle``: cyclic passes over one seeded shuffle of the users (DP-FTRL's
  participation). No amplification: the mechanism (tree aggregation) composes its
  passes itself, under dp_accounting's REPLACE_SPECIAL relation, RDP only.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import dp_accounting
import numpy as np


def poisson_cohort(
    *, population_size: int, sampling_probability: float, seed: int, round_num: int
) -> np.ndarray:
  """Sorted indices of the users sampled in round `round_num` (1-based).

  Each user independently with probability `sampling_probability`, drawn in work
  proportional to the cohort, not the population: the cohort's size is
  Binomial(population_size, q), and given its size the cohort is a uniform subset
  (which is the same distribution); numpy draws small subsets of large populations
  with Floyd's algorithm.
  """
  if not 0 < sampling_probability <= 1:
    raise ValueError(
        f'sampling_probability must be in (0, 1]. Found {sampling_probability}.')
  rng = np.random.default_rng([seed, 0xC0407, round_num])
  size = rng.binomial(population_size, sampling_probability)
  return np.sort(rng.choice(population_size, size=size, replace=False))


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


def sampling_probability(*, clients_per_round: float, population_size: int) -> float:
  """The share of the population sampled per round (expected share for Poisson)."""
  if not isinstance(population_size, int) or population_size < 1:
    raise ValueError(
        f'population size must be an integer >= 1. Found {population_size!r}.')
  if not 0 < clients_per_round <= population_size:
    raise ValueError(
        f'clients_per_round must be in (0, population size = {population_size}]. '
        f'Found {clients_per_round}.')
  return clients_per_round / population_size


def _whole(clients_per_round: float, sampling: str) -> int:
  if int(clients_per_round) != clients_per_round:
    raise ValueError(f'clients_per_round must be a whole number with sampling='
                     f'{sampling}. Found {clients_per_round}.')
  return int(clients_per_round)


def _poisson_event(inner, clients_per_round, population_size):
  q = sampling_probability(clients_per_round=clients_per_round,
                           population_size=population_size)
  return dp_accounting.PoissonSampledDpEvent(q, inner(1.0))


def _fixed_size_event(inner, clients_per_round, population_size):
  sampling_probability(clients_per_round=clients_per_round,
                       population_size=population_size)
  return dp_accounting.SampledWithoutReplacementDpEvent(
      population_size, _whole(clients_per_round, 'fixed_size'), inner(2.0))


def _draw_poisson(*, population_size, clients_per_round, seed, round_num):
  return poisson_cohort(population_size=population_size,
                        sampling_probability=clients_per_round / population_size,
                        seed=seed, round_num=round_num)


def _draw_fixed_size(*, population_size, clients_per_round, seed, round_num):
  return fixed_size_cohort(population_size=population_size,
                           cohort_size=_whole(clients_per_round, 'fixed_size'),
                           seed=seed, round_num=round_num)


def _draw_shuffle(*, population_size, clients_per_round, seed, round_num):
  return shuffle_cohort(population_size=population_size,
                        cohort_size=_whole(clients_per_round, 'shuffle'), seed=seed,
                        round_num=round_num)


def _passes(clients_per_round, population_size, rounds) -> dict:
  per_pass = rounds_per_pass(clients_per_round=clients_per_round,
                             population_size=population_size)
  return {'rounds_per_pass': per_pass, 'max_participations': -(-rounds // per_pass)}


@dataclasses.dataclass(frozen=True)
class Scheme:
  """One value of `sampling`: its cohort, its neighbouring relation, its round event."""

  name: str
  label: str  # in figures
  # What a statement's sampling was, in words: `summary` (run reports) and
  # `description` (the privacy CLI), formatted with the statement's fields.
  summary: str
  description: str
  neighboring_relation: str  # in the privacy statement
  relation: dp_accounting.NeighboringRelation  # the RDP accountant's
  accountants: tuple[str, ...]  # the accountants that analyse it
  draw: Callable[..., np.ndarray]  # (population_size, clients_per_round, seed,
  #                                    round_num) -> sorted user indices
  note: str  # how a round samples, for the statement
  dropout_reason: str  # why dropout keeps the guarantee
  # (inner, clients_per_round, population_size) -> the sampled event, where
  # inner(s) is the mechanism's event for a clipped sum that moves by s * clip between
  # neighbours; None: no amplification (the mechanism composes rounds itself).
  round_event: Optional[Callable] = None
  whole_cohort: bool = True  # clients_per_round must be a whole number
  pld_refusal: str = ''  # why the pld accountant is refused
  # (clients_per_round, population_size, rounds) -> the scheme's statement fields
  statement_fields: Optional[Callable[[float, int, int], dict]] = None

  def sampled_event(self, inner: Callable[[float], dp_accounting.DpEvent], *,
                    clients_per_round: float,
                    population_size: int) -> dp_accounting.DpEvent:
    """The DpEvent of one round: `inner(sensitivity)` on this scheme's cohort."""
    if self.round_event is None:
      raise ValueError(f'sampling={self.name} has no sampled round event (no '
                       'amplification): its mechanism composes its rounds itself.')
    return self.round_event(inner, clients_per_round, population_size)


SCHEMES: dict[str, Scheme] = {s.name: s for s in (
    Scheme(
        name='poisson', label='Poisson',
        summary='Poisson sampling q={sampling_probability:.3g}',
        description=('Poisson sampling, each user with probability '
                     '{sampling_probability:.4g} per round'),
        neighboring_relation='add or remove one user', whole_cohort=False,
        relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
        accountants=('rdp', 'pld'), draw=_draw_poisson, round_event=_poisson_event,
        note=('Each round samples every training user independently with probability '
              'sampling_probability (Poisson), as the accountant assumes'),
        dropout_reason=(
            'a user then contributes with probability q * (1 - dropout) <= q, and the '
            'Poisson-subsampled Gaussian spends less privacy at a smaller q, so the '
            'accountant, which uses q, gives an upper bound')),
    Scheme(
        name='fixed_size', label='fixed size',
        summary='{clients_per_round:g} users per round without replacement',
        description=('exactly {clients_per_round:g} users per round, uniformly without '
                     'replacement'),
        neighboring_relation='replace one user',
        relation=dp_accounting.NeighboringRelation.REPLACE_ONE,
        accountants=('rdp',), draw=_draw_fixed_size, round_event=_fixed_size_event,
        pld_refusal=(
            "The pld accountant cannot analyse fixed_size sampling: dp_accounting 0.4.3 "
            'has no PLD for sampling without replacement. Use the rdp accountant '
            '(replace-one-user neighbours) or poisson sampling.'),
        note=('Each round samples exactly clients_per_round training users uniformly '
              'without replacement, as the accountant assumes'),
        dropout_reason=(
            'given how many report, the reporting clients are a uniform sample without '
            'replacement of that size, whose amplification is at least that of a '
            'sample of clients_per_round, and a mixture over how many report is no '
            'less private than its worst part')),
    Scheme(
        name='shuffle', label='cyclic passes',
        summary='cyclic passes of {rounds_per_pass} rounds',
        description=('cyclic passes of {rounds_per_pass} rounds over one shuffle of the '
                     'users, no amplification claimed'),
        neighboring_relation=('replace one user by a user who contributes nothing '
                              '(zero update)'),
        relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL,
        accountants=('rdp',), draw=_draw_shuffle, statement_fields=_passes,
        pld_refusal=(
            'The pld accountant cannot analyse tree aggregation (sampling=shuffle): '
            'dp_accounting 0.4.3 accounts SingleEpochTreeAggregationDpEvent with RDP '
            'only. Use the rdp accountant.'),
        note=('Cyclic passes over one shuffle of the users: a user takes part at most '
              'once per pass'),
        dropout_reason=(
            'a user still takes part at most once per pass, one pass apart, and a user '
            'who drops out contributes nothing that round')),
)}


def get(name: str) -> Scheme:
  if name not in SCHEMES:
    raise ValueError(
        f'sampling must be one of {", ".join(SCHEMES)}. Found {name!r}.')
  return SCHEMES[name]


def rounds_per_pass(*, clients_per_round: float, population_size: int) -> int:
  """Rounds of one cyclic pass over the users (sampling=shuffle)."""
  sampling_probability(clients_per_round=clients_per_round,
                       population_size=population_size)
  return population_size // _whole(clients_per_round, 'shuffle')


def cohort(
    *, sampling: str, population_size: int, clients_per_round: float, seed: int,
    round_num: int,
) -> np.ndarray:
  """The cohort of round `round_num` under `sampling` (a name in `SCHEMES`).

  `clients_per_round` is the expected cohort for Poisson and the exact one otherwise;
  the accountant reads the same value (`fl_analytics.privacy.statement`).
  """
  return get(sampling).draw(population_size=population_size,
                            clients_per_round=clients_per_round, seed=seed,
                            round_num=round_num)
