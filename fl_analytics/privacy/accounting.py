"""dp_accounting, extended by events that give their own RDP.

dp_accounting's `RdpAccountant` knows a fixed set of events. A mechanism it does not
know (the Skellam mechanism, `fl_analytics.privacy.mechanisms.distributed`) defines an
`RdpDpEvent`: a `DpEvent` whose `rdp(orders)` is its Renyi DP at integer orders. The
`RdpAccountant` here composes those, alone or sampled without replacement
(`SampledWithoutReplacementDpEvent`, the general bound of Wang, Balle, Kasiviswanathan
2019, Theorem 9), and hands every other event to dp_accounting. So such a mechanism is
accounted, and calibrated with `dp_accounting.calibrate_dp_mechanism`, like the ones
dp_accounting knows.
"""

from __future__ import annotations

import functools
import json
import math
import os

import attr
import dp_accounting
from dp_accounting.rdp import rdp_privacy_accountant
import numpy as np

# Integer RDP orders for events whose bound holds at integer orders only: 2, 3, ...,
# 256 (contiguous, as the sampling bound needs), then a few large ones.
INTEGER_ORDERS = tuple(range(2, 257)) + (384, 512, 768, 1024)


class RdpDpEvent(dp_accounting.DpEvent):
  """A `DpEvent` that knows its own RDP curve (subclasses are attrs classes)."""

  def rdp(self, orders) -> np.ndarray:
    raise NotImplementedError


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


@functools.lru_cache(maxsize=256)
def _sampled_rdp(orders: tuple, event: RdpDpEvent, q: float) -> np.ndarray:
  """`event`'s RDP at `orders`, sampled without replacement at rate `q`.

  Theorem 9 at the contiguous orders 2, 3, ..., k at the start of `orders` (never
  above the unsampled RDP); the unsampled RDP at the orders past them (still an
  upper bound).
  """
  if not orders or orders[0] != 2:
    raise ValueError(f'{type(event).__name__} needs integer RDP orders from 2. '
                     f'Found {orders[:5]}...')
  base = np.asarray(event.rdp(orders), dtype=float)
  k = 0
  while k < len(orders) and orders[k] == k + 2:
    k += 1
  amplified = sample_without_replacement_rdp(orders[:k], base[:k], q)
  return np.concatenate([np.minimum(amplified, base[:k]), base[k:]])


# dp_accounting 0.4.3 computes the RDP of a Poisson-sampled Gaussian at tiny sampling
# rates (a million users, q ~ 1e-3) and large noise as a difference of logs, which can
# round below zero (seen: -8.4e-13 at q = 0.00125, z = 10, order 1.25); its epsilon then
# refuses the negative value. RDP is never negative: values that small are rounding,
# and are replaced by this upper bound on it. Anything more negative still raises.
RDP_ROUNDING = 1e-9


def _without_rounding_below_zero(rdp) -> np.ndarray:
  rdp = np.asarray(rdp, dtype=float)
  return np.where((rdp < 0) & (rdp >= -RDP_ROUNDING), RDP_ROUNDING, rdp)


def compute_epsilon(orders, rdp, delta: float) -> tuple[float, float]:
  """dp_accounting's `compute_epsilon` (epsilon, optimal order) from an RDP curve,
  reading values within `RDP_ROUNDING` below zero as rounding."""
  return rdp_privacy_accountant.compute_epsilon(
      orders, _without_rounding_below_zero(rdp), delta)


class RdpAccountant(dp_accounting.rdp.RdpAccountant):
  """dp_accounting's RDP accountant that also composes `RdpDpEvent`s, and reads RDP
  values within `RDP_ROUNDING` below zero as rounding."""

  def get_epsilon_and_optimal_order(self, target_delta: float):
    return compute_epsilon(self._orders, self._rdp, target_delta)

  def get_delta_and_optimal_order(self, target_epsilon: float):
    return rdp_privacy_accountant.compute_delta(
        self._orders, _without_rounding_below_zero(self._rdp), target_epsilon)

  def _maybe_compose(self, event, count, do_compose):
    if isinstance(event, RdpDpEvent):
      if do_compose:
        self._rdp += count * np.asarray(event.rdp(self._orders), dtype=float)
      return None
    if (isinstance(event, dp_accounting.SampledWithoutReplacementDpEvent)
        and isinstance(event.event, RdpDpEvent)):
      if self._neighboring_relation is not dp_accounting.NeighboringRelation.REPLACE_ONE:
        return rdp_privacy_accountant.CompositionErrorDetails(
            invalid_event=event, error_message=(
                'neighboring_relation must be REPLACE_ONE for sampling without '
                f'replacement. Found {self._neighboring_relation}.'))
      if do_compose:
        self._rdp += count * _sampled_rdp(
            tuple(int(o) for o in self._orders), event.event,
            event.sample_size / event.source_dataset_size)
      return None
    return super()._maybe_compose(event, count, do_compose)


# --- Tree aggregation with several participations -------------------------------------

# Worst-case sums of squared sensitivities computed before (`tree_sensitivity_square_sum`),
# keyed "steps,max_participations,min_separation"; written by tools/tree_sensitivity.py.
TREE_SENSITIVITY_FILE = os.path.join(os.path.dirname(__file__), 'tree_sensitivity.json')


def _tree_key(steps: int, max_participations: int, min_separation: int) -> str:
  return f'{int(steps)},{int(max_participations)},{int(min_separation)}'


@functools.lru_cache(maxsize=None)
def _tree_sensitivity_table() -> dict:
  if not os.path.exists(TREE_SENSITIVITY_FILE):
    return {}
  with open(TREE_SENSITIVITY_FILE) as f:
    return json.load(f)['values']


def compute_tree_sensitivity_square_sum(steps: int, max_participations: int,
                                        min_separation: int) -> float:
  """TF Privacy's worst-case sum of a user's squared contributions over the nodes of
  one aggregation tree of `steps` leaves, when the user takes part at most
  `max_participations` times with at least `min_separation` rounds between two
  participations (TF Privacy's convention: rounds x < y give y - x - 1). Kairouz et
  al. 2021, Appendix D; `tree_aggregation_accountant.compute_zcdp_single_tree` is this
  over twice the noise multiplier squared. It can take minutes at production sizes
  (2,000 rounds, 6 participations, 313 apart: about 145 s here)."""
  from tensorflow_privacy.privacy.analysis import tree_aggregation_accountant  # pylint: disable=g-import-not-at-top

  return 2 * tree_aggregation_accountant.compute_zcdp_single_tree(
      1.0, int(steps), int(max_participations), int(min_separation))


@functools.lru_cache(maxsize=None)
def tree_sensitivity_square_sum(steps: int, max_participations: int,
                                min_separation: int) -> float:
  """`compute_tree_sensitivity_square_sum`, read from `TREE_SENSITIVITY_FILE` where it
  was computed before, else computed (and kept for this process)."""
  if min(steps, max_participations) < 1 or min_separation < 0:
    raise ValueError('Tree aggregation needs steps >= 1, max_participations >= 1 and '
                     f'min_separation >= 0. Found {steps}, {max_participations}, '
                     f'{min_separation}.')
  key = _tree_key(steps, max_participations, min_separation)
  table = _tree_sensitivity_table()
  if key in table:
    return float(table[key])
  return compute_tree_sensitivity_square_sum(steps, max_participations, min_separation)


def tree_zcdp(noise_multiplier: float, steps: int, max_participations: int,
              min_separation: int) -> float:
  """The zCDP rho of one tree (no restarts) over `steps` rounds, noise multiplier `z`
  per node, each user at most `max_participations` times, `min_separation` apart:
  S / (2 z**2), S the worst-case squared sensitivity (`tree_sensitivity_square_sum`)."""
  if not noise_multiplier > 0:
    return math.inf
  return tree_sensitivity_square_sum(steps, max_participations, min_separation) / (
      2 * noise_multiplier**2)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class TreeAggregationZcdpDpEvent(RdpDpEvent):
  """DP-FTRL's tree aggregation over `steps` rounds, one tree (no restarts), each user
  at most `max_participations` times and `min_separation` rounds apart (Kairouz et al.
  2021, Appendix D; the accounting of Gboard's DP-FTRL models). Its privacy is rho-zCDP
  (`tree_zcdp`), so its RDP is rho * order at every order."""

  noise_multiplier: float
  steps: int
  max_participations: int
  min_separation: int

  def zcdp(self) -> float:
    return tree_zcdp(self.noise_multiplier, self.steps, self.max_participations,
                     self.min_separation)

  def rdp(self, orders) -> np.ndarray:
    return self.zcdp() * np.asarray(orders, dtype=float)
