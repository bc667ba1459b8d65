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

The schedules production can run claim no amplification either: privacy comes from
bounding each user's participations (`Participation`: at most `max_participations`,
at least `min_separation` rounds apart), which the mechanism's accounting reads
(`Scheme.bounds`):

* ``min_separation``: the (k, b)-participation of Choquette-Choo et al. 2023
  ("Multi-epoch matrix factorization mechanisms", "(Amplified) banded matrix
  factorization"): the users are shuffled once into `min_separation` equal groups and
  round `t` samples `clients_per_round` users of group `t mod b`, so a user's
  participations are multiples of `b` rounds apart.
* ``available``: availability-driven check-ins. Devices take part when they are idle,
  charging and on an unmetered network, which for most is a window of hours at night
  (Bonawitz et al. 2019, "Towards federated learning at scale", Section 2): each user
  has a daily window (`window_hours` from a start hour around 22:00), round `t` is at
  hour `(t - 1) * 24 / rounds_per_day` of the day, and its cohort is drawn uniformly
  from the users available then who have taken part fewer than `max_participations`
  times and not in the last `min_separation - 1` rounds (fewer when not enough are).

`ParticipationCheck` records what the schedule did in the run (the most participations
of a user, the smallest separation) and fails when that breaks the bounds the
accounting used.
"""

from __future__ import annotations

import dataclasses
import functools
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


@dataclasses.dataclass(frozen=True)
class Participation:
  """A run's participation limits and check-in pattern (the `participation` section).

  `min_separation` b: two participations of one user are at least b rounds apart
  (rounds i < j with j - i >= b; b = 1 allows consecutive rounds; the convention of
  jax-privacy's `min_sep`, TF Privacy's `min_separation` is b - 1).
  `max_participations` k: at most k in the run (None: as many as b allows,
  ceil(rounds / b)). `rounds_per_day`, `window_hours`: the `available` scheme's clock
  and each device's daily window.
  """

  max_participations: Optional[int] = None
  min_separation: int = 1
  rounds_per_day: int = 24
  window_hours: float = 8.0

  def check(self, prefix: str = 'participation.') -> None:
    """ValueError naming a bad value and what is allowed."""
    k = self.max_participations
    if k is not None and (isinstance(k, bool) or int(k) != k or k < 1):
      raise ValueError(f'{prefix}max_participations must be None or an integer >= 1. '
                       f'Found {k!r}.')
    for name in ('min_separation', 'rounds_per_day'):
      value = getattr(self, name)
      if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f'{prefix}{name} must be an integer >= 1. Found {value!r}.')
    if not 0 < self.window_hours <= 24:
      raise ValueError(f'{prefix}window_hours must be in (0, 24]. '
                       f'Found {self.window_hours!r}.')

  def participations(self, rounds: int) -> int:
    """The most participations `rounds` rounds allow a user: k, or ceil(rounds / b)."""
    possible = -(-int(rounds) // self.min_separation)
    k = self.max_participations
    return max(1, possible if k is None else min(int(k), possible))


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


def _draw_poisson(*, population_size, clients_per_round, seed, round_num,
                  participation=None):
  del participation
  return poisson_cohort(population_size=population_size,
                        sampling_probability=clients_per_round / population_size,
                        seed=seed, round_num=round_num)


def _draw_fixed_size(*, population_size, clients_per_round, seed, round_num,
                     participation=None):
  del participation
  return fixed_size_cohort(population_size=population_size,
                           cohort_size=_whole(clients_per_round, 'fixed_size'),
                           seed=seed, round_num=round_num)


def _draw_shuffle(*, population_size, clients_per_round, seed, round_num,
                  participation=None):
  del participation
  return shuffle_cohort(population_size=population_size,
                        cohort_size=_whole(clients_per_round, 'shuffle'), seed=seed,
                        round_num=round_num)


def min_separation_cohort(*, population_size: int, cohort_size: int, seed: int,
                          round_num: int, participation: Participation) -> np.ndarray:
  """(k, b)-participation: one seeded shuffle of the users cut into b groups of
  `population_size // b` (the rest never take part); round `t` draws `cohort_size` of
  group `(t - 1) mod b` uniformly (seeded per round). After k passes over the groups
  (`max_participations`) nobody is left to sample."""
  b = participation.min_separation
  group = population_size // b
  if not 0 < cohort_size <= group:
    raise ValueError(
        f'sampling=min_separation: clients_per_round={cohort_size} must be in (0, '
        f'population // min_separation = {population_size} // {b} = {group}]: each '
        'round samples one of the min_separation groups.')
  k = participation.max_participations
  if k is not None and round_num > k * b:
    return np.zeros(0, np.int64)
  order = np.random.default_rng([seed, 0xB5E9]).permutation(population_size)
  start = ((round_num - 1) % b) * group
  members = order[start:start + group]
  pick = np.random.default_rng([seed, 0xB5E9, round_num]).choice(
      group, size=cohort_size, replace=False)
  return np.sort(members[pick])


def _draw_min_separation(*, population_size, clients_per_round, seed, round_num,
                         participation=None):
  return min_separation_cohort(
      population_size=population_size,
      cohort_size=_whole(clients_per_round, 'min_separation'), seed=seed,
      round_num=round_num, participation=participation or Participation())


class CheckIns:
  """The `available` scheme's state: who has taken part how often and when last.

  Each round's cohort depends on the rounds before it (the caps), so the state is
  stepped round by round from round 1; `cohort(t)` is still a function of
  `(seed, t)` alone: asked for an earlier round, it starts again from round 1.
  """

  def __init__(self, population_size: int, cohort_size: int, seed: int,
               participation: Participation):
    self._n, self._m, self._seed = population_size, cohort_size, seed
    self._p = participation
    rng = np.random.default_rng([seed, 0xA7A1])
    # Local start of each device's idle-and-charging window: around 22:00.
    self._start = (22.0 + 1.5 * rng.standard_normal(population_size)) % 24
    self._reset()

  def _reset(self):
    self._round = 0
    self._count = np.zeros(self._n, np.int32)
    self._last = np.full(self._n, -(1 << 30), np.int64)
    self._recent: dict[int, np.ndarray] = {}

  def available(self, round_num: int) -> np.ndarray:
    """Whether each user's window holds round `round_num`'s hour of the day."""
    hour = ((round_num - 1) * 24.0 / self._p.rounds_per_day) % 24
    return (hour - self._start) % 24 < self._p.window_hours

  def _step(self) -> np.ndarray:
    t = self._round + 1
    k = self._p.max_participations
    eligible = self.available(t) & (t - self._last >= self._p.min_separation)
    if k is not None:
      eligible &= self._count < k
    candidates = np.flatnonzero(eligible)
    rng = np.random.default_rng([self._seed, 0xA7A1, t])
    chosen = np.sort(rng.choice(candidates, size=min(self._m, len(candidates)),
                                replace=False))
    self._count[chosen] += 1
    self._last[chosen] = t
    self._round = t
    self._recent = {r: c for r, c in self._recent.items() if r > t - 4}
    self._recent[t] = chosen
    return chosen

  def cohort(self, round_num: int) -> np.ndarray:
    if round_num in self._recent:
      return self._recent[round_num]
    if round_num <= self._round:
      self._reset()
    while self._round < round_num:
      chosen = self._step()
    return chosen


@functools.lru_cache(maxsize=4)
def _check_ins(population_size, cohort_size, seed, participation) -> CheckIns:
  return CheckIns(population_size, cohort_size, seed, participation)


def _draw_available(*, population_size, clients_per_round, seed, round_num,
                    participation=None):
  return _check_ins(population_size, _whole(clients_per_round, 'available'), seed,
                    participation or Participation()).cohort(round_num)


def _pass_bounds(clients_per_round, population_size, rounds, participation):
  del participation
  per_pass = rounds_per_pass(clients_per_round=clients_per_round,
                             population_size=population_size)
  return -(-rounds // per_pass), per_pass


def _schedule_bounds(clients_per_round, population_size, rounds, participation):
  del clients_per_round, population_size
  participation = participation or Participation()
  return participation.participations(rounds), participation.min_separation


def _passes(clients_per_round, population_size, rounds, participation) -> dict:
  k, per_pass = _pass_bounds(clients_per_round, population_size, rounds, participation)
  return {'rounds_per_pass': per_pass, 'max_participations': k}


def _schedule(clients_per_round, population_size, rounds, participation) -> dict:
  k, b = _schedule_bounds(clients_per_round, population_size, rounds, participation)
  return {'max_participations': k, 'min_separation': b}


def _check_ins_fields(clients_per_round, population_size, rounds, participation) -> dict:
  participation = participation or Participation()
  return {**_schedule(clients_per_round, population_size, rounds, participation),
          'rounds_per_day': participation.rounds_per_day,
          'window_hours': participation.window_hours}


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
  # (clients_per_round, population_size, rounds, participation) -> the scheme's
  # statement fields
  statement_fields: Optional[Callable[..., dict]] = None
  # (clients_per_round, population_size, rounds, participation) -> (k, b): the most
  # participations of a user in `rounds` rounds and their least separation, which the
  # accounting of a scheme without amplification uses and `ParticipationCheck` checks;
  # None: sampled (amplification), no bound.
  bounds: Optional[Callable[..., tuple[int, int]]] = None

  def sampled_event(self, inner: Callable[[float], dp_accounting.DpEvent], *,
                    clients_per_round: float,
                    population_size: int) -> dp_accounting.DpEvent:
    """The DpEvent of one round: `inner(sensitivity)` on this scheme's cohort."""
    if self.round_event is None:
      raise ValueError(f'sampling={self.name} has no sampled round event (no '
                       'amplification): its mechanism composes its rounds itself.')
    return self.round_event(inner, clients_per_round, population_size)


def _schedule_scheme(*, name: str, **fields) -> Scheme:
  """A production schedule: participations bounded (`_schedule_bounds`), no
  amplification, zero-out neighbours, RDP."""
  return Scheme(
      name=name, bounds=_schedule_bounds, accountants=('rdp',),
      neighboring_relation=('replace one user by a user who contributes nothing '
                            '(zero update)'),
      relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL,
      pld_refusal=(f'The pld accountant cannot analyse sampling={name} here: its '
                   'mechanisms are accounted with RDP or zCDP. Use the rdp accountant.'),
      dropout_reason=('a user who drops out contributes nothing that round, which keeps '
                      'its participations within the bounds'), **fields)


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
        bounds=_pass_bounds,
        pld_refusal=(
            'The pld accountant cannot analyse tree aggregation (sampling=shuffle): '
            'dp_accounting 0.4.3 accounts SingleEpochTreeAggregationDpEvent with RDP '
            'only. Use the rdp accountant.'),
        note=('Cyclic passes over one shuffle of the users: a user takes part at most '
              'once per pass'),
        dropout_reason=(
            'a user still takes part at most once per pass, one pass apart, and a user '
            'who drops out contributes nothing that round')),
    _schedule_scheme(
        name='min_separation', label='(k, b)-participation',
        summary='{max_participations} participations, {min_separation} rounds apart',
        description=('(k, b)-participation: {min_separation} groups in turn, so a user '
                     'takes part at most {max_participations} times, multiples of '
                     '{min_separation} rounds apart; no amplification claimed'),
        draw=_draw_min_separation, statement_fields=_schedule,
        note=('(k, b)-participation: the users are shuffled once into min_separation '
              'groups, taken in turn, so a user takes part at most max_participations '
              'times, min_separation rounds apart; no sampling amplification is claimed')),
    _schedule_scheme(
        name='available', label='availability check-ins',
        summary=('check-ins: {max_participations} participations, {min_separation} '
                 'rounds apart'),
        description=('availability-driven check-ins ({rounds_per_day} rounds a day, '
                     'devices available {window_hours:g} h a day), capped at '
                     '{max_participations} participations per user, {min_separation} '
                     'rounds apart; no amplification claimed'),
        draw=_draw_available, statement_fields=_check_ins_fields,
        note=('Availability-driven check-ins: each round draws its cohort from the users '
              'whose daily window holds its hour, capped so that a user takes part at '
              'most max_participations times, at least min_separation rounds apart; no '
              'sampling amplification is claimed')),
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
    round_num: int, participation: Optional[Participation] = None,
) -> np.ndarray:
  """The cohort of round `round_num` under `sampling` (a name in `SCHEMES`).

  `clients_per_round` is the expected cohort for Poisson and the exact one otherwise
  (the most, for `available`); the accountant reads the same value
  (`fl_analytics.privacy.statement`). `participation`: the schedules' limits.
  """
  return get(sampling).draw(population_size=population_size,
                            clients_per_round=clients_per_round, seed=seed,
                            round_num=round_num, participation=participation)


def check_schedule(*, sampling: str, population_size: int, clients_per_round: float,
                   rounds: int, participation: Participation) -> None:
  """ValueError when a schedule cannot run `rounds` rounds as configured, naming the
  keys: a `min_separation` group must hold a cohort, and its k passes must cover the
  rounds."""
  if sampling != 'min_separation':
    return
  b, k = participation.min_separation, participation.max_participations
  if clients_per_round > population_size // b:
    raise ValueError(
        f'sampling=min_separation: clients_per_round={clients_per_round:g} must be at '
        f'most population // participation.min_separation = {population_size} // {b} '
        f'= {population_size // b}: each round samples one of the min_separation groups.')
  if k is not None and rounds > k * b:
    raise ValueError(
        f'sampling=min_separation: num_rounds={rounds} is more than '
        f'participation.max_participations * participation.min_separation = {k} * {b}'
        f' = {k * b}: the rounds after that would find nobody left to sample.')


class ParticipationError(RuntimeError):
  """A round's cohort breaks the participation bounds the accounting assumed."""


# Below this probability (a union bound over the users), a sampled scheme's most
# frequent participant is taken as proof that the cohorts are not the stated ones.
IMPOSSIBLE = 1e-9


class ParticipationCheck:
  """What the schedule did in a run, against the bounds its accounting assumed.

  `record(t, users)` before round `t` runs: each user's count and last round are
  updated, and a `ParticipationError` names the first user that takes part more than
  `max_participations` times or fewer than `min_separation` rounds after its previous
  participation (`bounds`: (k, b)). A sampled scheme (`bounds` None) has no bound to
  break, but it has a distribution: each user takes part in each round with
  probability `rate`, independently across rounds, so a user's count after t rounds is
  Binomial(t, rate). When the most frequent participant's count is beyond what any of
  the users would reach with probability `IMPOSSIBLE` (a union bound over them), the
  cohorts are not the ones the accountant assumed (the same users every round, a rate
  higher than stated), and that too is a `ParticipationError`.
  `fields()` is what the privacy statement records of it.
  """

  def __init__(self, population_size: int, bounds: Optional[tuple[int, int]],
               rate: Optional[float] = None):
    self._bounds = bounds
    self._rate = rate
    self._tail = 1.0  # the union bound on the most frequent participant's count
    self._count = np.zeros(population_size, np.int32)
    self._last = np.zeros(population_size, np.int64)  # 0: never
    self.rounds = 0  # the last round recorded
    self._min_gap: Optional[int] = None

  def record(self, round_num: int, users) -> None:
    users = np.asarray(users, np.int64)
    taken = users[self._count[users] > 0]
    gaps = round_num - self._last[taken]
    if len(taken):
      gap = int(np.min(gaps))
      self._min_gap = gap if self._min_gap is None else min(self._min_gap, gap)
    self._count[users] += 1
    self._last[users] = round_num
    self.rounds = round_num
    if self._bounds is None:
      self._check_rate(round_num, users)
      return
    k, b = self._bounds
    over = users[self._count[users] > k]
    if len(over):
      raise ParticipationError(
          f'Round {round_num}: user {int(over[0])} takes part for the '
          f'{int(self._count[over[0]])}th time; the accounting assumed at most '
          f'max_participations={k}.')
    close = np.flatnonzero(gaps < b)
    if len(close):
      raise ParticipationError(
          f'Round {round_num}: user {int(taken[close[0]])} takes part '
          f'{int(gaps[close[0]])} rounds after its previous participation; the '
          f'accounting assumed at least min_separation={b}.')

  def _check_rate(self, round_num: int, users: np.ndarray) -> None:
    if self._rate is None or not len(users):
      return
    from scipy import stats  # pylint: disable=g-import-not-at-top

    user = int(users[np.argmax(self._count[users])])
    count = int(self._count[user])
    tail = min(1.0, len(self._count) * float(
        stats.binom.sf(count - 1, round_num, self._rate)))
    self._tail = min(self._tail, tail)
    if tail < IMPOSSIBLE:
      raise ParticipationError(
          f'Round {round_num}: user {user} takes part for the {count}th time in '
          f'{round_num} rounds; sampled at rate {self._rate:.4g} per round, as the '
          f'accountant assumes, any of the {len(self._count)} users would with '
          f'probability below {tail:.1e}: the cohorts are not the ones accounted for.')

  def fields(self) -> dict:
    """The statement's `participation_checked`: rounds checked, the most
    participations of one user, their least separation (None: nobody twice), and
    whether the bounds held; for a sampled scheme, the union bound on the probability
    of the most frequent participant's count under the stated rate."""
    return {'rounds': self.rounds,
            'max_participations_seen': int(self._count.max(initial=0)),
            'min_separation_seen': self._min_gap,
            **({'max_participations_probability': self._tail}
               if self._rate is not None else {}),
            **({'bounds': {'max_participations': self._bounds[0],
                           'min_separation': self._bounds[1]}, 'held': True}
               if self._bounds is not None else {})}
