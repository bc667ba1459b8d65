"""A privacy budget across releases: the ledger of an analytics session.

A session has a user-level budget (epsilon, delta). Every release charged to it is
recorded in `ledger.json` in the session's directory (written atomically, so it survives
a crash and a restart), and what the recorded releases spend together is their
composition by dp_accounting's accountant (`statement.make_accountant`: PLD, or RDP),
not the sum of their epsilons. A release that would take the composition past the
budget is refused before it runs, naming what is spent and what is left.

Each release is a Gaussian mechanism over the whole population (every user contributes
once, with the sensitivity the query's contribution bound gives), described by its noise
multiplier: `dp_accounting.GaussianDpEvent(noise_multiplier)`, composed `count` times,
plus any delta it spends outright (`extra_delta`: a heavy-hitter release's threshold).
The session's epsilon is that of the composed Gaussian mechanisms at the budget's delta
less every entry's extra delta.
Releases are charged before they run, so a release interrupted half-way counts as spent.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Sequence

import dp_accounting

from fl_analytics.core import rundir
from fl_analytics.privacy import statement

LEDGER_FILE = 'ledger.json'
# A charge may exceed the budget by this relative slack: a release calibrated to the
# whole budget spends it up to the calibration's tolerance.
BUDGET_SLACK = 1e-3


class BudgetExceeded(ValueError):
  """A release that the session's budget cannot pay for."""


@dataclasses.dataclass(frozen=True)
class Entry:
  name: str  # what was released, e.g. 'feature_usage epsilon=1'
  noise_multiplier: float  # noise stddev / the release's L2 sensitivity
  count: int = 1  # how many such releases
  extra_delta: float = 0.0  # delta spent outright, besides the Gaussian's (each)


def composed_epsilon(entries: Sequence[Entry], *, delta: float, accountant: str) -> float:
  """Epsilon at `delta` of all `entries` together (0 for none; inf when their extra
  deltas leave none)."""
  if not entries:
    return 0.0
  left = delta - sum(e.extra_delta * e.count for e in entries)
  if left <= 0:
    return math.inf
  acc = statement.make_accountant(accountant=accountant, sampling='poisson')
  for e in entries:
    acc.compose(dp_accounting.GaussianDpEvent(e.noise_multiplier), e.count)
  return float(acc.get_epsilon(left))


class Ledger:
  """The budget and the releases charged to it, kept in `workdir/ledger.json`."""

  def __init__(self, workdir: str, *, epsilon: float, delta: float,
               accountant: str = 'pld'):
    if not (0 < epsilon and math.isfinite(epsilon)) or not 0 < delta < 1:
      raise ValueError(f'A budget needs epsilon > 0 (finite) and delta in (0, 1). Found '
                       f'epsilon={epsilon!r}, delta={delta!r}.')
    self.path = os.path.join(workdir, LEDGER_FILE)
    self.epsilon, self.delta, self.accountant = float(epsilon), float(delta), accountant
    self.entries: list[Entry] = []
    if os.path.exists(self.path):
      self._load()
    self.spent = composed_epsilon(self.entries, delta=self.delta,
                                  accountant=self.accountant)

  def _load(self) -> None:
    try:
      saved = rundir.read_json(self.path)
      budget = (float(saved['budget']['epsilon']), float(saved['budget']['delta']),
                saved['accountant'])
      entries = [Entry(str(e['name']), float(e['noise_multiplier']), int(e['count']),
                       float(e.get('extra_delta', 0.0)))
                 for e in saved['releases']]
    except (ValueError, KeyError, TypeError) as e:
      raise rundir.RunDirectoryError(
          f'{self.path} is not a ledger this session can read ({e}); it records what '
          'was spent, so it is not replaced: move it away only if those releases were '
          'never published.') from None
    if budget != (self.epsilon, self.delta, self.accountant):
      raise ValueError(
          f'{self.path} holds a budget of epsilon {budget[0]:g}, delta {budget[1]:g} '
          f'({budget[2]}); this session asks for epsilon {self.epsilon:g}, delta '
          f'{self.delta:g} ({self.accountant}). A budget does not change once spent '
          'from; use another directory for another session.')
    self.entries = entries

  def check(self, entries: Sequence[Entry]) -> float:
    """The epsilon spent with `entries` added; raises BudgetExceeded if over budget."""
    after = composed_epsilon([*self.entries, *entries], delta=self.delta,
                             accountant=self.accountant)
    if after > self.epsilon * (1 + BUDGET_SLACK):
      raise BudgetExceeded(
          f'{", ".join(e.name for e in entries)} would bring the session in '
          f'{os.path.dirname(self.path) or "."} to epsilon {after:.4g} at delta '
          f'{self.delta:g}, over its budget of {self.epsilon:g}: {self.spent:.4g} is '
          f'spent by {len(self.entries)} release(s), so releases composing to at most '
          f'{self.epsilon:g} with them are left.')
    return after

  def charge(self, entries: Sequence[Entry]) -> float:
    """Records `entries` (after `check`); returns the epsilon spent with them."""
    after = self.check(entries)
    self.entries += list(entries)
    self.spent = after  # the composition of every entry, as `check` computed it
    rundir.write_json(self.path, self.to_json())
    return after

  def to_json(self) -> dict[str, Any]:
    return {
        'budget': {'epsilon': self.epsilon, 'delta': self.delta},
        'accountant': self.accountant,
        'spent_epsilon': self.spent,
        'composition': ('every release composed by dp_accounting '
                        f'({self.accountant}) as a Gaussian mechanism of its noise '
                        'multiplier over all users, at the budget\'s delta less the '
                        'releases\' extra_delta'),
        'left_epsilon': max(self.epsilon - self.spent, 0.0),
        'releases': [dataclasses.asdict(e) for e in self.entries],
    }
