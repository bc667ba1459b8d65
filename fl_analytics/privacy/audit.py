"""Empirical privacy estimation from canary cosines (the statistics part of issue 16).

The one-shot method of Andrew, Kairouz, Oh, Oprea, McMahan and Suriyakumar ("One-shot
Empirical Privacy Estimation for Federated Learning", ICLR 2024). K canary clients
each send a fixed random direction. After training, the statistic of canary k is the
cosine between its direction and the final model delta (or a round's update).
- A canary that was never inserted ("unseen") has the cosine of a random direction
  against a fixed vector. In d dimensions its square is Beta(1/2, (d - 1) / 2)
  distributed, whatever the training did. This is the null hypothesis, known exactly.
- The inserted canaries' cosines are fitted by a Gaussian N(mu, sigma**2), the
  alternative.
- The estimate is the epsilon at delta of the best threshold test between the two:
  for a threshold t, FPR(t) = P(null >= t) and FNR(t) = P(alternative < t), and every
  (epsilon, delta)-DP mechanism has FPR * e**epsilon + FNR >= 1 - delta and the same
  with FPR and FNR swapped (Kairouz, Oh, Viswanath 2015).
- The lower bound with confidence 1 - alpha uses no Gaussian fit: the exact null's FPR
  and a Clopper-Pearson bound on the FNR at one threshold. Unlike the reference code
  (google-research/federated `one_shot_epe/`), which takes the best threshold over the
  same canaries that certify it, the threshold is chosen on half of the canaries and
  certified on the other half. In simulation (20000 dimensions, 1000 canaries, 12
  seeds for each of z = 1, 2, 4) the reference's way put the bound above the exact
  epsilon of the Gaussian mechanism in 33 to 42% of runs at alpha = 0.05; the split
  bound in none.

The paper's all-iterates variant takes each canary's largest cosine with any round's
model delta; its null is not known in closed form, so `estimate_empirical_null` fits
a Gaussian to the unseen canaries' statistics as well, and its lower bound takes the
FPR from them (a Clopper-Pearson bound, which caps what that bound can certify at
about log(U / 2) for U unseen canaries).

This module is the mathematics only: numpy and scipy, no TensorFlow. The canaries are
inserted into training by `fl_analytics.privacy.canaries`; `training` writes `audit.json`.
`membership_inference` is the practical attacker beside the canaries: the
loss-threshold attack of Yeom et al. (2018) on per-user losses.

Measured in simulation (`experiments/audit_simulation.py`, defaults: one Gaussian release
of the sum of 500 unit canaries in 5000 dimensions, 40 seeds per noise level, delta 1e-5):

| z | RDP claim | exact | estimate median [range] | interval above claim | lower bound max | above exact |
|---|---|---|---|---|---|---|
| 1 | 4.73 | 4.38 | 4.68 [4.08, 6.07] | 8% | 2.43 | 0% |
| 2 | 2.17 | 1.99 | 2.39 [1.88, 3.64] | 18% | 1.13 | 0% |
| 4 | 1.01 | 0.93 | 1.25 [0.80, 2.42] | 28% | 0.56 | 0% |

- The lower bound never exceeded the exact epsilon of the Gaussian mechanism. It is
  weak, about half of it.
- The point estimate overstates at this many canaries. The fitted spread of the seen
  cosines differs from the null's by sampling error, and two Gaussians of unequal spread
  have an unbounded privacy loss. The bootstrap interval (`epsilon_interval`) does not
  cover that bias: its lower end was above the claim in 8 to 28% of these correct runs.
- So `Estimate.exceeds` flags a run only on the lower bound. The estimate and its
  interval are reported beside it, not used as a test.

Unlike the reference code, the null tail is the exact regularized incomplete beta
function at every dimension. The reference integrates the density numerically below
1000 dimensions and uses N(0, 1/d) above.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import numpy as np
from scipy import optimize
from scipy import special
from scipy import stats


def null_log_sf(t, dim: int) -> np.ndarray:
  """log P(T >= t) for T the cosine of a uniformly random direction in `dim` dimensions.

  T**2 ~ Beta(1/2, (dim - 1) / 2), symmetric around 0: for t >= 0,
  P(T >= t) = I_{1 - t**2}((dim - 1) / 2, 1/2) / 2 (the regularized incomplete beta).
  """
  if not isinstance(dim, (int, np.integer)) or dim < 2:
    raise ValueError(f'dim must be an integer >= 2. Found {dim!r}.')
  t = np.clip(np.asarray(t, dtype=float), -1.0, 1.0)
  upper = 0.5 * special.betainc((dim - 1) / 2, 0.5, 1.0 - t**2)  # P(T >= |t|)
  sf = np.where(t >= 0, upper, 1.0 - upper)
  with np.errstate(divide='ignore'):
    return np.log(sf)


def _epsilon_from_rates(log_fpr, fnr, delta: float) -> np.ndarray:
  """The largest epsilon the rates (FPR, FNR) of one test certify at `delta` (>= 0)."""
  fpr = np.exp(log_fpr)
  with np.errstate(divide='ignore', invalid='ignore'):
    one = np.log(1.0 - delta - fnr) - log_fpr
    two = np.log(1.0 - delta - fpr) - np.log(fnr)
  both = np.fmax(np.where(np.isnan(one), -np.inf, one),
                 np.where(np.isnan(two), -np.inf, two))
  return np.maximum(both, 0.0)


def epsilon_estimate(seen_cosines: Sequence[float], *, dim: Optional[int] = None,
                     delta: float, null: Optional[tuple[float, float]] = None,
                     grid: int = 20000) -> float:
  """The epsilon estimate: a Gaussian fitted to `seen_cosines` against the null.

  The null is the exact cosine distribution in `dim` dimensions (the final-model
  statistic), or with `null=(mean, std)` a Gaussian (the all-iterates statistic, whose
  null is fitted to the unseen canaries). The best threshold over a grid between the
  null's and the fit's 1 - delta quantiles (beyond them one of the rates exceeds
  1 - delta and certifies nothing).
  """
  seen = np.asarray(seen_cosines, dtype=float)
  if len(seen) < 2:
    raise ValueError(f'At least 2 seen canaries are needed. Found {len(seen)}.')
  _check_delta(delta)
  mu, sigma = float(seen.mean()), float(seen.std(ddof=1))
  if not sigma > 0 or (null is not None and not null[1] > 0):
    return math.inf
  # Fine near both fits, and across the whole range of a cosine.
  centers = [(mu, sigma)] + ([null] if null is not None else [])
  t = np.unique(np.clip(np.concatenate([np.linspace(-1.0, 1.0, grid // 2)] + [
      np.linspace(m - 12 * s, m + 12 * s, grid // 2) for m, s in centers]), -1.0, 1.0))
  fnr = stats.norm.cdf(t, loc=mu, scale=sigma)
  log_fpr = (null_log_sf(t, dim) if null is None
             else stats.norm.logsf(t, loc=null[0], scale=null[1]))
  return float(np.max(_epsilon_from_rates(log_fpr, fnr, delta)))


def epsilon_interval(seen_cosines: Sequence[float], *, dim: Optional[int] = None,
                     delta: float, unseen_cosines: Optional[Sequence[float]] = None,
                     level: float = 0.9, resamples: int = 200,
                     seed: int = 0) -> tuple[float, float]:
  """A bootstrap interval of `epsilon_estimate` (the canaries resampled with
  replacement): the estimate's uncertainty from the finite number of canaries. With
  `unseen_cosines`, the null is their Gaussian fit, resampled as well."""
  seen = np.asarray(seen_cosines, dtype=float)
  unseen = None if unseen_cosines is None else np.asarray(unseen_cosines, dtype=float)
  rng = np.random.default_rng([seed, 0xB007])
  values = []
  for _ in range(resamples):
    null = None
    if unseen is not None:
      u = unseen[rng.integers(0, len(unseen), len(unseen))]
      null = (float(u.mean()), float(u.std(ddof=1)))
    values.append(epsilon_estimate(seen[rng.integers(0, len(seen), len(seen))], dim=dim,
                                   delta=delta, null=null, grid=4000))
  tail = 50 * (1 - level)
  return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


MIN_ABOVE = 10


def gdp_epsilon(mu: float, delta: float) -> float:
  """Epsilon at `delta` of mu-Gaussian DP (Dong, Roth, Su 2022, Corollary 2.13):
  delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2), solved for eps >= 0.
  The Gaussian mechanism with noise multiplier z is (1/z)-GDP; `tests/
  mechanism_audit_test.py` checks it against dp_accounting's PLD."""
  if not 0 < delta < 1:
    raise ValueError(f'delta must be in (0, 1). Found {delta}.')
  if not mu > 0:
    return 0.0
  if not math.isfinite(mu):
    return math.inf

  def excess(eps):
    tail = stats.norm.logcdf(-eps / mu - mu / 2) + eps
    return stats.norm.cdf(-eps / mu + mu / 2) - math.exp(min(tail, 700.0)) - delta

  if excess(0.0) <= 0:
    return 0.0
  high = mu * mu / 2 + mu * math.sqrt(2 * math.log(1 / delta)) + 10
  return float(optimize.brentq(excess, 0.0, high, xtol=1e-10))


def clopper_pearson_upper(failures, trials: int, alpha: float) -> np.ndarray:
  """One-sided upper (1 - alpha) Clopper-Pearson bound on a binomial rate (exact)."""
  failures = np.asarray(failures, dtype=float)
  upper = stats.beta.ppf(1.0 - alpha, failures + 1, np.maximum(trials - failures, 1e-12))
  return np.where(failures >= trials, 1.0, upper)


def epsilon_lower_bound(seen_cosines: Sequence[float], *, dim: Optional[int] = None,
                        delta: float, unseen_cosines: Optional[Sequence[float]] = None,
                        alpha: float = 0.05, seed: int = 0) -> float:
  """An epsilon lower bound that holds with probability >= 1 - alpha (no Gaussian fit).

  Choosing the best of many thresholds on the same canaries that then certify it
  overstates the bound (the largest cosine always has one canary above it). So the
  canaries are split in two at random (seeded): the first half chooses the threshold
  (the one with the largest bound), and the second half certifies it alone. The FPR is
  the exact null's in `dim` dimensions; or, with `unseen_cosines` (a null known only
  through them, as for the all-iterates statistic), a Clopper-Pearson upper bound on
  the share of the certifying half of the unseen canaries above the threshold. The
  FNR is a Clopper-Pearson upper bound; with two bounds each holds at alpha / 2.
  """
  seen = np.asarray(seen_cosines, dtype=float)
  if len(seen) < 2:
    raise ValueError(f'At least 2 seen canaries are needed. Found {len(seen)}.')
  _check_delta(delta)
  if not 0 < alpha < 1:
    raise ValueError(f'alpha must be in (0, 1). Found {alpha}.')
  rng = np.random.default_rng([seed, 0xB0B])
  order = rng.permutation(len(seen))
  choose, certify = np.sort(seen[order[:len(seen) // 2]]), seen[order[len(seen) // 2:]]
  if unseen_cosines is None:
    log_fpr = lambda t, _: null_log_sf(t, dim)
    each = alpha
  else:
    unseen = np.asarray(unseen_cosines, dtype=float)
    u_order = rng.permutation(len(unseen))
    halves = (np.sort(unseen[u_order[:len(unseen) // 2]]),
              np.sort(unseen[u_order[len(unseen) // 2:]]))
    each = alpha / 2

    def log_fpr(t, half):
      above = len(halves[half]) - np.searchsorted(halves[half], t, side='left')
      with np.errstate(divide='ignore'):
        return np.log(clopper_pearson_upper(above, len(halves[half]), each))
  # Thresholds with at least MIN_ABOVE of the choosing half above them: a threshold
  # that only the largest few cosines pass is one the certifying half often misses.
  usable = choose[:max(1, len(choose) - MIN_ABOVE + 1)]
  candidates = _epsilon_from_rates(
      log_fpr(usable, 0),
      clopper_pearson_upper(np.arange(len(usable)), len(choose), each), delta)
  t = usable[int(np.argmax(candidates))]
  fnr = clopper_pearson_upper(int(np.sum(certify < t)), len(certify), each)
  return float(_epsilon_from_rates(log_fpr(t, 1), fnr, delta))


def threshold_counts(in_scores: Sequence[float], out_scores: Sequence[float],
                     threshold: float) -> tuple[int, int]:
  """(true positives, false positives) of guessing "in" for every score >= threshold."""
  return (int(np.sum(np.asarray(in_scores) >= threshold)),
          int(np.sum(np.asarray(out_scores) >= threshold)))


def epsilon_clopper_pearson(in_scores: Sequence[float], out_scores: Sequence[float], *,
                            threshold: float, alpha: float, delta: float) -> float:
  """The epsilon lower bound of one threshold test (Jagielski, Ullman, Oprea 2020,
  "Auditing differentially private machine learning: how private is private SGD?"):
  with probability >= 1 - alpha, TPR >= its Clopper-Pearson lower bound and FPR <= its
  upper bound (alpha / 2 each), and (epsilon, delta)-DP needs TPR <= e^epsilon FPR +
  delta, so epsilon >= log((TPR_lower - delta) / FPR_upper); 0 when that is not
  positive. `tests/audit_test.py` checks it against jax-privacy's."""
  _check_delta(delta, allow_zero=True)
  tp, fp = threshold_counts(in_scores, out_scores, threshold)
  tpr_lower = 1.0 - float(clopper_pearson_upper(len(in_scores) - tp, len(in_scores),
                                                alpha / 2))
  fpr_upper = float(clopper_pearson_upper(fp, len(out_scores), alpha / 2))
  if tpr_lower <= delta:
    return 0.0
  return max(0.0, math.log(tpr_lower - delta) - math.log(fpr_upper))


def _roc_frontier(false_negatives: np.ndarray, true_negatives: np.ndarray) -> np.ndarray:
  """Indices of the thresholds on the upper concave hull of the (false negatives, true
  negatives) points (sorted by both): those no mixture of two others beats. Collinear
  points are dropped (Andrew's monotone chain)."""
  hull: list[int] = []
  for i in range(len(false_negatives)):
    while len(hull) >= 2:
      a, b = hull[-2], hull[-1]
      fa, ta = false_negatives[a], true_negatives[a]
      cross = ((false_negatives[b] - fa) * (true_negatives[i] - ta)
               - (true_negatives[b] - ta) * (false_negatives[i] - fa))
      if cross < 0:
        break
      hull.pop()
    hull.append(i)
  return np.asarray(hull)


def gdp_mu_bounds(in_scores: Sequence[float], out_scores: Sequence[float], *,
                  alpha: float, delta: float) -> np.ndarray:
  """Phi^-1(1 - FPR) - Phi^-1(FNR) at each threshold on the hull of the scores' ROC, from
  Clopper-Pearson upper bounds on the FPR and FNR (Bonferroni: alpha over twice the
  thresholds; those where either bound is 1 - delta or more left out). Where it is
  positive, it is a lower bound on mu for any mu-GDP mechanism (Dong, Roth, Su 2022,
  Eq. 6), all of them at once with probability >= 1 - alpha."""
  _check_delta(delta)
  inside = np.sort(np.asarray(in_scores, float))
  outside = np.sort(np.asarray(out_scores, float))
  thresholds = np.append(np.union1d(inside, outside), np.inf)
  fn = np.searchsorted(inside, thresholds, side='left')
  tn = np.searchsorted(outside, thresholds, side='left')
  hull = _roc_frontier(fn, tn)
  each = alpha / (2 * len(hull))
  fnr = clopper_pearson_upper(fn[hull], len(inside), each)
  fpr = clopper_pearson_upper(len(outside) - tn[hull], len(outside), each)
  usable = np.maximum(fnr, fpr) < 1 - delta
  return stats.norm.isf(fpr[usable]) - stats.norm.ppf(fnr[usable])


def epsilon_from_gdp(in_scores: Sequence[float], out_scores: Sequence[float], *,
                     alpha: float, delta: float) -> float:
  """The epsilon lower bound of a Gaussian-DP fit over every threshold (Nasr et al.
  2023, "Tight auditing of differentially private machine learning"): the largest
  `gdp_mu_bounds`, converted at `delta` (`gdp_epsilon`, capped at 100); 0 when none is
  positive.

  jax-privacy 2.0.0's `CanaryScoreAuditor.epsilon_from_gdp` takes the largest absolute
  value instead. A negative value bounds nothing (the reversed test would need lower
  bounds on the rates, not upper), and with it jax-privacy certifies 2.87 for two
  samples of the same distribution. `tests/audit_test.py` checks that the absolute
  values give jax-privacy's numbers and that the positive ones do not."""
  bounds = gdp_mu_bounds(in_scores, out_scores, alpha=alpha, delta=delta)
  mu = float(np.max(bounds, initial=0.0))
  return min(gdp_epsilon(mu, delta), 100.0) if mu > 0 else 0.0


def one_run_p_value(canaries: int, guesses: int, correct: int, epsilon: float,
                    delta: float) -> float:
  """How likely `correct` or more right guesses of `guesses` are among `canaries`
  canaries each included with probability 1/2, under (epsilon, delta)-DP (Steinke,
  Nasr, Jagielski 2023, Theorem 5.2): P[Binomial(guesses, e^eps / (1 + e^eps)) >=
  correct] plus, for delta > 0, 2 * canaries * delta times the largest excess tail per
  extra right guess."""
  q = special.expit(epsilon)
  beta = stats.binom.sf(correct - 1, guesses, q)
  if delta == 0 or correct == 0:
    return float(min(beta, 1.0))
  extra = np.arange(1, correct + 1)
  alpha = np.max((stats.binom.sf(correct - extra - 1, guesses, q) - beta) / extra)
  return float(min(beta + max(alpha, 0.0) * delta * 2 * canaries, 1.0))


def epsilon_one_run(in_scores: Sequence[float], out_scores: Sequence[float], *,
                    threshold: float, alpha: float, delta: float) -> float:
  """The largest epsilon that the guesses above `threshold` refute with confidence
  1 - alpha (`one_run_p_value` <= alpha; 0 if none): the one-run audit of Steinke,
  Nasr and Jagielski (2023), one-sided, in which every canary counts, in or out.
  `tests/audit_test.py` checks it against jax-privacy's."""
  _check_delta(delta, allow_zero=True)
  tp, fp = threshold_counts(in_scores, out_scores, threshold)
  canaries, guesses = len(in_scores) + len(out_scores), tp + fp

  def refuted(epsilon):
    return alpha - one_run_p_value(canaries, guesses, tp, epsilon, delta)

  if guesses == 0 or refuted(0.0) <= 0:
    return 0.0
  high = 1.0
  while refuted(high) > 0:
    high *= 2
  return float(optimize.brentq(refuted, 0.0, high, xtol=1e-9))


def _check_delta(delta: float, allow_zero: bool = False) -> None:
  if not ((delta >= 0 if allow_zero else delta > 0) and delta < 1):
    raise ValueError(f'delta must be in {"[0" if allow_zero else "(0"}, 1). Found {delta}.')


def cosines(directions: np.ndarray, update: np.ndarray) -> np.ndarray:
  """Cosine of each row of `directions` [K, d] with `update` [d]."""
  directions = np.asarray(directions, dtype=float)
  update = np.asarray(update, dtype=float).reshape(-1)
  norms = np.linalg.norm(directions, axis=1) * np.linalg.norm(update)
  return directions @ update / np.where(norms > 0, norms, 1.0)


def canary_directions(count: int, dim: int, *, seed: int) -> np.ndarray:
  """`count` seeded uniformly random unit directions in `dim` dimensions."""
  g = np.random.default_rng([seed, 0xCA7A]).standard_normal((count, dim))
  return g / np.linalg.norm(g, axis=1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class Estimate:
  """What the cosines say: the estimate, its lower bound and the cosines' statistics."""

  epsilon: float
  interval: tuple[float, float]  # bootstrap, `epsilon_interval`
  lower_bound: float
  seen_mean: float
  seen_std: float
  unseen_mean: float
  unseen_std: float
  canaries: int
  dim: Optional[int]  # None: the null is the unseen canaries' (all iterates)

  def exceeds(self, claimed_epsilon: float) -> bool:
    """Whether the canaries contradict `claimed_epsilon` at confidence 1 - alpha: the
    lower bound is above it. (Not the estimate: it overstates at few canaries; see the
    module docstring.)"""
    return self.lower_bound > claimed_epsilon

  def as_dict(self, claimed_epsilon: float) -> dict[str, Any]:
    """The fields of `audit.json` for this statistic."""
    return {  # None: infinite (no finite epsilon fits the cosines)
        'epsilon_estimate': _finite_or_none(self.epsilon),
        'epsilon_interval_90': [_finite_or_none(v) for v in self.interval],
        'epsilon_lower_bound': _finite_or_none(self.lower_bound),
        'exceeds_claim': self.exceeds(claimed_epsilon),
        'null': ('exact cosine distribution in the model dimension' if self.dim
                 else 'Gaussian fitted to the unseen canaries'),
        'seen_cosines': {'mean': self.seen_mean, 'std': self.seen_std},
        'unseen_cosines': {'mean': self.unseen_mean, 'std': self.unseen_std},
    }


def estimate(seen_cosines: Sequence[float], unseen_cosines: Sequence[float], *,
             dim: int, delta: float, alpha: float = 0.05) -> Estimate:
  """The estimate and the lower bound of `seen_cosines` against the exact null in `dim`
  dimensions, with both sides' statistics (the unseen cosines are reported, and
  checked against the null they should follow)."""
  seen = np.asarray(seen_cosines, dtype=float)
  unseen = np.asarray(unseen_cosines, dtype=float)
  return Estimate(
      epsilon=epsilon_estimate(seen, dim=dim, delta=delta),
      interval=epsilon_interval(seen, dim=dim, delta=delta),
      lower_bound=epsilon_lower_bound(seen, dim=dim, delta=delta, alpha=alpha),
      **_statistics(seen, unseen), dim=dim)


def estimate_empirical_null(seen_statistics: Sequence[float],
                            unseen_statistics: Sequence[float], *, delta: float,
                            alpha: float = 0.05) -> Estimate:
  """As `estimate`, for a statistic whose null is known only through the unseen
  canaries: the paper's all-iterates variant (each canary's largest cosine with any
  round's model delta), with both sides fitted by Gaussians and the lower bound's FPR
  from the unseen canaries."""
  seen = np.asarray(seen_statistics, dtype=float)
  unseen = np.asarray(unseen_statistics, dtype=float)
  if len(unseen) < 2:
    raise ValueError(f'At least 2 unseen canaries are needed. Found {len(unseen)}.')
  null = (float(unseen.mean()), float(unseen.std(ddof=1)))
  return Estimate(
      epsilon=epsilon_estimate(seen, delta=delta, null=null),
      interval=epsilon_interval(seen, delta=delta, unseen_cosines=unseen),
      lower_bound=epsilon_lower_bound(seen, delta=delta, unseen_cosines=unseen,
                                      alpha=alpha),
      **_statistics(seen, unseen), dim=None)


def _finite_or_none(value: float) -> Optional[float]:
  return float(value) if math.isfinite(value) else None


def _statistics(seen: np.ndarray, unseen: np.ndarray) -> dict[str, Any]:
  return dict(
      seen_mean=float(seen.mean()), seen_std=float(seen.std(ddof=1)),
      unseen_mean=float(unseen.mean()) if len(unseen) else math.nan,
      unseen_std=float(unseen.std(ddof=1)) if len(unseen) > 1 else math.nan,
      canaries=len(seen))


def membership_inference(member_losses: Sequence[float],
                         nonmember_losses: Sequence[float], *,
                         fprs: Sequence[float] = (0.01, 0.001)) -> dict[str, Any]:
  """The loss-threshold membership attack (Yeom et al., CSF 2018) on per-user losses:
  a user is called a member when their loss is below a threshold.

  Returns its ROC AUC (the Mann-Whitney statistic, ties one half) and its TPR at each
  FPR in `fprs`: the largest share of members below a threshold that at most that
  share of non-members are below (None when there are too few non-members to tell,
  fewer than 1 / FPR).
  """
  members = np.asarray(member_losses, dtype=float)
  others = np.asarray(nonmember_losses, dtype=float)
  if not len(members) or not len(others):
    raise ValueError('membership_inference needs members and non-members.')
  ranks = stats.rankdata(np.concatenate([-members, -others]))
  auc = (ranks[:len(members)].sum() - len(members) * (len(members) + 1) / 2) / (
      len(members) * len(others))
  sorted_others = np.sort(others)
  tpr = {}
  for fpr in fprs:
    allowed = int(math.floor(fpr * len(others)))  # non-members below the threshold
    if len(others) < 1 / fpr:
      tpr[str(fpr)] = None
      continue
    # The threshold just at the (allowed + 1)-th smallest non-member loss.
    threshold = sorted_others[allowed]
    tpr[str(fpr)] = float(np.mean(members < threshold))
  return {'attack': 'loss threshold (Yeom et al. 2018) on per-user mean loss',
          'members': len(members), 'non_members': len(others), 'auc': float(auc),
          'tpr_at_fpr': tpr}
