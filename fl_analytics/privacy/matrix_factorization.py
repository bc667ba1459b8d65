"""Matrix-factorization mechanisms for DP-FTRL: banded Toeplitz and buffered linear
Toeplitz (BLT) strategies, their sensitivity, error and optimization (numpy, scipy).

A model trained with DP-FTRL releases the prefix sums of its rounds' clipped sums x:
the workload A (n x n, lower-triangular ones). A matrix mechanism factors A = B C and
releases B (C x + z): the noise each round receives is the t-th entry of C^{-1} z, for
z i.i.d. Gaussian of stddev `noise_multiplier * clip * sens(C)`. Its privacy is that
of one Gaussian mechanism with that noise multiplier on C x, whose L2 sensitivity
sens(C) depends on how often and how far apart a user takes part. Notation and
conventions are jax-privacy's (`jax_privacy.matrix_factorization`, README): C the
strategy, C^{-1} the noising matrix, n rounds, k `max_participations`, b `min_sep` (two
participations i < j have j - i >= b).

All matrices here are lower-triangular Toeplitz, given by their first column `coefs`:

* **Banded Toeplitz** (Choquette-Choo et al. 2023, "(Amplified) banded matrix
  factorization"; McKenna 2024, "Scaling up the banded matrix factorization mechanism"):
  `bands` nonzero coefficients. Noise generation keeps the last `bands - 1` noise
  vectors (C w = z, solved forward).
* **BLT** (Dvijotham, McMahan, Pillutla, Steinke, Thakurta 2024, "Efficient and
  near-optimal noise generation for streaming differential privacy"; several
  participations: McMahan et al. 2024, arXiv 2408.08868): c_0 = 1 and
  c_t = sum_i output_scale_i * buf_decay_i ** (t - 1), so C w = z is solved with one
  buffer per buf_decay: O(buffers x model size) memory for any n.

Sensitivity under b-min-separation with at most k participations: for non-negative,
non-increasing coefficients the worst case is k participations exactly b apart from
round 0 (Kalinin and Lampert 2024, "Banded square root matrix factorization", Theorem
2); other coefficients are first replaced by the smallest non-negative non-increasing
sequence above their absolute values, which gives an upper bound. Error: the squared
error of the released prefix sums under unit noise, at the last round (`'max'`, the
largest for Toeplitz strategies) or averaged over rounds (`'mean'`). Loss: sens^2 x error.

The strategies are optimized with scipy's L-BFGS-B (analytic gradient for banded,
finite differences for the few BLT parameters). `tools/mf_reference.py` computes the
same quantities with jax-privacy in its own environment; `tests/mf_test.py` compares.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional

import numpy as np
from scipy import optimize as scipy_optimize
from scipy import signal

from fl_analytics.privacy import sampling

ERRORS = ('max', 'mean')


def true_max_participations(n: int, min_sep: int,
                            max_participations: Optional[int] = None) -> int:
  """The most participations n rounds allow at separation b, capped at k
  (`sampling.Participation.participations`, what the schedules' accounting reads)."""
  return sampling.Participation(max_participations=max_participations,
                                min_separation=int(min_sep)).participations(n)


def inverse_coefs(coefs, n: int) -> np.ndarray:
  """The first column of C^{-1} (n entries) for C lower-triangular Toeplitz with first
  column `coefs` (c_0 != 0): the impulse response of the filter 1 / C(x)."""
  coefs = np.asarray(coefs, dtype=float)
  if not coefs[0]:
    raise ValueError('The first Toeplitz coefficient must be nonzero.')
  impulse = np.zeros(n)
  impulse[0] = 1.0
  return signal.lfilter([1.0], coefs[:n], impulse)


def blt_coefs(buf_decay, output_scale, n: int) -> np.ndarray:
  """The first n Toeplitz coefficients of the BLT C: 1, then
  sum_i output_scale_i * buf_decay_i ** (t - 1) for t >= 1."""
  theta, omega = np.asarray(buf_decay, float), np.asarray(output_scale, float)
  powers = theta[None, :] ** np.arange(n - 1)[:, None]
  return np.concatenate([[1.0], powers @ omega])


def _blt_polynomials(buf_decay, output_scale) -> tuple[np.ndarray, np.ndarray]:
  """C(x) = N(x) / Q(x): Q = prod_i (1 - theta_i x), N = Q + x sum_i omega_i
  prod_{j != i} (1 - theta_j x); coefficients in increasing powers of x."""
  theta, omega = np.asarray(buf_decay, float), np.asarray(output_scale, float)
  factors = [np.array([1.0, -t]) for t in theta]
  q = functools.reduce(np.convolve, factors, np.array([1.0]))
  num = np.concatenate([q, [0.0]])
  for i, w in enumerate(omega):
    others = functools.reduce(np.convolve, factors[:i] + factors[i + 1:], np.array([1.0]))
    num[1:1 + len(others)] += w * others
  return num[:len(q)], q


def blt_inverse_coefs(buf_decay, output_scale, n: int) -> np.ndarray:
  """The first column of C^{-1} for a BLT C, in O(n x buffers): the impulse response
  of Q(x) / N(x) (`_blt_polynomials`)."""
  num, q = _blt_polynomials(buf_decay, output_scale)
  impulse = np.zeros(n)
  impulse[0] = 1.0
  return signal.lfilter(q, num, impulse)


def _projected(coefs) -> np.ndarray:
  """The smallest non-negative non-increasing sequence at least |coefs|."""
  return np.maximum.accumulate(np.abs(np.asarray(coefs, float))[::-1])[::-1]


def _worst_case_sum(coefs, n: int, min_sep: int,
                    max_participations: Optional[int]) -> np.ndarray:
  """The sum of columns 0, b, ..., (k - 1) b of the n x n lower-triangular Toeplitz C
  whose first column is `coefs` made non-negative non-increasing (`_projected`),
  padded or cut to n: the worst participation pattern's contribution."""
  if min_sep < 1:
    raise ValueError(f'min_sep must be >= 1. Found {min_sep}.')
  c = np.zeros(n)
  coefs = _projected(coefs)[:n]
  c[:len(coefs)] = coefs
  total = np.zeros(n)
  for j in range(true_max_participations(n, min_sep, max_participations)):
    total[j * min_sep:] += c[:n - j * min_sep]
  return total


def minsep_sensitivity_squared(coefs, n: int, min_sep: int,
                               max_participations: Optional[int] = None) -> float:
  """sens(C)^2 for C n x n lower-triangular Toeplitz (first column `coefs`, padded or
  cut to n) under b-min-separation with at most k participations: the squared norm of
  the sum of columns 0, b, ..., (k - 1) b of the projected C (exact for non-negative
  non-increasing coefficients, an upper bound otherwise)."""
  total = _worst_case_sum(coefs, n, min_sep, max_participations)
  return float(total @ total)


def _error_weights(n: int, error: str) -> np.ndarray:
  """Weights w_s with error = sum_s w_s B_s^2, B = A C^{-1}'s first column: the last
  round's error ('max': every w_s = 1) or the mean over rounds ((n - s) / n)."""
  if error == 'max':
    return np.ones(n)
  if error == 'mean':
    return (n - np.arange(n)) / n
  raise ValueError(f'error must be one of {", ".join(ERRORS)}. Found {error!r}.')


def error_from_inverse(noising_coefs, error: str = 'max') -> float:
  """The prefix workload's squared error under unit noise, from C^{-1}'s first column:
  B = A C^{-1} has first column cumsum(noising_coefs); row t's squared norm is
  sum_{s <= t} B_s^2."""
  b = np.cumsum(np.asarray(noising_coefs, float))
  return float(_error_weights(len(b), error) @ b**2)


def per_query_error(noising_coefs) -> np.ndarray:
  """Each round's squared error of its prefix sum under unit noise."""
  return np.cumsum(np.cumsum(np.asarray(noising_coefs, float))**2)


@dataclasses.dataclass(frozen=True)
class Strategy:
  """An optimized strategy C for n rounds, k participations, b apart: its first
  column (`coefs`, nonzero part), what generates its noise (`buf_decay` and
  `output_scale` for a BLT), its sensitivity and errors under unit noise."""

  kind: str  # 'banded' | 'blt'
  n: int
  max_participations: int
  min_sep: int
  coefs: tuple[float, ...]  # banded: its nonzero coefficients; blt: () (toeplitz_coefs)
  buf_decay: tuple[float, ...] = ()
  output_scale: tuple[float, ...] = ()
  sensitivity: float = 1.0
  max_error: float = 0.0
  mean_error: float = 0.0

  @property
  def loss(self) -> float:
    """sens^2 x max error: the last round's noise variance relative to the clip and
    noise multiplier."""
    return self.sensitivity**2 * self.max_error

  def toeplitz_coefs(self, n: Optional[int] = None) -> np.ndarray:
    """C's first column, n entries."""
    n = self.n if n is None else n
    if self.kind == 'blt':
      return blt_coefs(self.buf_decay, self.output_scale, n)
    return np.pad(np.asarray(self.coefs, float), (0, n))[:n]

  def fields(self) -> dict:
    """What config.json records of it (under the mechanism's name)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()}


def _strategy(kind, n, k, b, coefs, noising, **blt) -> Strategy:
  return Strategy(
      kind=kind, n=n, max_participations=true_max_participations(n, b, k), min_sep=b,
      coefs=() if blt else tuple(float(c) for c in coefs),
      sensitivity=math.sqrt(minsep_sensitivity_squared(coefs, n, b, k)),
      max_error=error_from_inverse(noising, 'max'),
      mean_error=error_from_inverse(noising, 'mean'),
      **{key: tuple(float(v) for v in value) for key, value in blt.items()})


# --- banded Toeplitz ------------------------------------------------------------------


def optimal_max_error_coefs(n: int) -> np.ndarray:
  """The Toeplitz square root of the prefix workload: the coefficients of (1 - x)^{-1/2},
  C(2t, t) / 4^t (Fichtenberger, Henzinger, Upadhyay 2023), which start the search."""
  t = np.arange(1, n)
  return np.concatenate([[1.0], np.cumprod((2 * t - 1) / (2 * t))])


def banded_loss_and_grad(coefs, n: int, min_sep: int, max_participations: Optional[int],
                         error: str = 'max') -> tuple[float, np.ndarray]:
  """sens^2 x error of the banded Toeplitz C with first column `coefs`, and its
  gradient. With v = C^{-1} e_0 and B = cumsum(v): d error / d c = -2 V^T C^{-T} P^T
  (w * B), V the Toeplitz matrix of v, P the prefix sums (coefficients taken as
  non-negative non-increasing: the sensitivity's gradient ignores the projection)."""
  c = np.asarray(coefs, float)
  bands = len(c)
  v = inverse_coefs(c, n)
  prefix = np.cumsum(v)
  weights = _error_weights(n, error)
  err = float(weights @ prefix**2)
  g = np.cumsum((weights * prefix)[::-1])[::-1]  # P^T (w * B)
  y = np.convolve(g[::-1], v)[:n][::-1]  # C^{-T} g = reverse(C^{-1} reverse(g))
  grad_err = -2 * np.array([v[:n - j] @ y[j:] for j in range(bands)])
  total = _worst_case_sum(c, n, min_sep, max_participations)
  sens2 = float(total @ total)
  grad_sens = np.zeros(bands)
  for j in range(true_max_participations(n, min_sep, max_participations)):
    part = total[j * min_sep:j * min_sep + bands]
    grad_sens[:len(part)] += 2 * part
  return sens2 * err, sens2 * grad_err + err * grad_sens * np.sign(c)


@functools.lru_cache(maxsize=16)
def optimize_banded(n: int, bands: int, min_sep: int,
                    max_participations: Optional[int] = None, error: str = 'max',
                    max_steps: int = 500) -> Strategy:
  """The banded Toeplitz strategy with `bands` coefficients that minimizes sens^2 x
  error on n rounds, started from the truncated square root of the workload; scaled
  so that c_0 = 1."""
  bands = max(1, min(int(bands), int(n)))
  start = optimal_max_error_coefs(bands)
  fun = lambda c: banded_loss_and_grad(c, n, min_sep, max_participations, error)
  bounds = [(1e-6, None)] + [(0.0, None)] * (bands - 1)
  result = scipy_optimize.minimize(fun, start, jac=True, method='L-BFGS-B',
                                   bounds=bounds, options={'maxiter': max_steps})
  best = result.x if result.fun <= fun(start)[0] else start
  best = best / best[0]
  return _strategy('banded', n, max_participations, min_sep, best,
                   inverse_coefs(best, n))


# --- BLT ------------------------------------------------------------------------------


# What the BLT search reads as the loss of parameters whose C^{-1} overflows (its
# filter is unstable there): finite, so that L-BFGS-B steps back.
_UNSTABLE = 1e30


def blt_loss(params, n: int, min_sep: int, max_participations: Optional[int],
             error: str = 'max') -> float:
  """sens^2 x error of the BLT with params = (buf_decay..., output_scale...)."""
  theta, omega = np.split(np.asarray(params, float), 2)
  with np.errstate(all='ignore'):
    noising = blt_inverse_coefs(theta, omega, n)
    if not np.all(np.isfinite(noising)):
      return _UNSTABLE
    loss = (minsep_sensitivity_squared(blt_coefs(theta, omega, n), n, min_sep,
                                       max_participations)
            * error_from_inverse(noising, error))
  return float(loss) if math.isfinite(loss) else _UNSTABLE


def _starts(buffers: int, previous: Optional[np.ndarray], rng) -> list[np.ndarray]:
  """Where the search for `buffers` buffers starts: decays spread from slow to fast;
  the same with the slowest at 1 (a running sum, as the optima jax-privacy finds
  have); the best with one buffer fewer and a new fast one; a few random ones."""
  spread = np.concatenate([1 - np.logspace(-3, -0.3, buffers),
                           np.full(buffers, 0.5 / buffers)])
  running = np.concatenate([[1.0], 1 - np.logspace(-2, -0.3, buffers - 1),
                            [0.03], np.full(buffers - 1, 0.3)])
  starts = [spread, running]
  if previous is not None:
    theta, omega = np.split(previous, 2)
    starts.append(np.concatenate([theta, [0.5 * theta.min()], omega, [0.01]]))
  for _ in range(3):
    starts.append(np.concatenate([np.sort(rng.uniform(0.3, 1.0, buffers))[::-1],
                                  rng.uniform(0.0, 1.0 / buffers, buffers)]))
  return starts


def _optimize_buffers(n, buffers, min_sep, k, error, max_steps, previous, rng):
  """The best BLT with `buffers` buffers (buf_decay and output_scale in [0, 1]) over
  the `_starts`."""
  fun = lambda p: blt_loss(p, n, min_sep, k, error)
  best, best_loss = None, math.inf
  for start in _starts(buffers, previous, rng):
    result = scipy_optimize.minimize(fun, start, method='L-BFGS-B',
                                     bounds=[(0.0, 1.0)] * (2 * buffers),
                                     options={'maxiter': max_steps})
    if result.fun < best_loss:
      best, best_loss = result.x, float(result.fun)
  return best, best_loss


@functools.lru_cache(maxsize=16)
def optimize_blt(n: int, min_sep: int, max_participations: Optional[int] = None,
                 error: str = 'max', max_buffers: int = 6, rtol: float = 1.01,
                 max_steps: int = 500) -> Strategy:
  """The BLT that minimizes sens^2 x error on n rounds: 1, 2, ... buffers while one
  more lowers the loss by more than `rtol` (jax-privacy's `optimize` rule). Seeded:
  the same arguments give the same strategy."""
  rng = np.random.default_rng(0xB17)
  best, best_loss = None, math.inf
  for buffers in range(1, max_buffers + 1):
    params, loss = _optimize_buffers(n, buffers, min_sep, max_participations, error,
                                     max_steps, best, rng)
    if loss * rtol >= best_loss:
      break
    best, best_loss = params, loss
  theta, omega = np.split(best, 2)
  keep = omega > 0  # a buffer with no output scale does nothing
  theta, omega = theta[keep], omega[keep]
  return _strategy('blt', n, max_participations, min_sep, blt_coefs(theta, omega, n),
                   blt_inverse_coefs(theta, omega, n), buf_decay=theta,
                   output_scale=omega)


def identity(n: int, min_sep: int, max_participations: Optional[int] = None) -> Strategy:
  """C = I: independent noise every round (DP-SGD without amplification)."""
  return _strategy('banded', n, max_participations, min_sep, [1.0],
                   inverse_coefs([1.0], n))
