"""A white-box audit of a DP aggregator: the mechanism itself, over many trials.

Nasr, Hayes, Steinke, Balle, Tramer, Jagielski, Carlini and Terzis (2023, "Tight
auditing of differentially private machine learning") reach tight bounds when the
auditor chooses the inputs and sees every output. Here the auditor runs the
`tff.aggregators` process that training runs (`audit_mechanism`: built by
`fl_analytics.privacy.aggregators.build` from the mechanism registry, as the round builds
it) or any factory with a claim the caller gives (`audit_factory`), on inputs it chose:

* `users` background users with fixed updates of norms 0.5 to 2 clips, pointing roughly
  the same way (as users' updates do), whose clipped sum the auditor knows;
* `dim` canary clients: canary j sends an update of `CANARY_NORM` clips along coordinate
  j in every round when it is present (each independently with probability 1/2), a
  zero update when it is absent (zero-out neighbours).

Each canary is one trial of neighbouring inputs. Every mechanism here claims noise that
is independent across coordinates, so coordinate j of the rounds' outputs depends on
canary j alone, and one call of the process runs `dim` trials (the batching: 10^5 trials
of one round in about a minute here). A batch is a freshly built process (a fresh noise
seed) run for `rounds` rounds. From y_j, coordinate j of each round's output times the
denominator minus the users' clipped sum, the audit tests what the accountant assumes,
one property at a time (`Check`):

* noise scale: the stddev of y_j over absent canaries, each round, against the claimed;
* noise correlation: their correlation across rounds against the claimed one
  (independence, or a matrix mechanism's C^-1 C^-T: `Mechanism.noise_covariance`);
* clip: the mean of y_j with the canary present minus absent, against the clip (one
  insertion moves the sum by exactly the clip), and the absent mean against 0 (each
  user's update is clipped on its own, not the sum);
* sampling (`sampling_check`): each user's participations in the scheme's cohorts
  against the distribution or bounds the accountant assumes;
* epsilon: the trials' scores w . y_j, with w = S^-1 1 for S the noise covariance
  measured on held-out trials (the most powerful linear test for a canary in every
  round). A Gaussian-DP estimate mu = (mean in - mean out) / sd with its confidence
  interval gives an epsilon estimate (`audit.gdp_epsilon`); Clopper-Pearson at a threshold
  chosen on the held-out trials gives a distribution-free lower bound
  (`audit.epsilon_clopper_pearson`, checked against jax-privacy's). The check fails
  when the lower bound, or the estimate's whole 99.9% interval, is above the
  accountant's claim.

`docs/audit.md` says which audit catches what; `experiments/audit_mechanisms.py` (`make
audit-mechanisms`) audits every registered mechanism and the sabotaged ones.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import numpy as np
from scipy import stats

from fl_analytics.privacy import aggregators
from fl_analytics.privacy import audit
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import sampling

CANARY_NORM = 1000.0  # a present canary's update, in clips: far beyond any clip
HOLDOUT = 0.1  # the share of trials that choose the statistic and the threshold
SCALE_TOLERANCE = 0.05  # noise stddev and clip effect: relative, or 5 standard errors
CORRELATION_TOLERANCE = 0.05  # noise correlation: absolute, or 5 standard errors
STANDARD_ERRORS = 5.0
# The epsilon check's interval: a correct mechanism whose claim is tight has its
# estimate's (1 - alpha) interval wholly above the claim alpha / 2 of the time, so the
# check reads the interval at this confidence instead (reported: 1 - alpha).
CHECK_CONFIDENCE = 0.999


@dataclasses.dataclass(frozen=True)
class Claim:
  """What an aggregator claims for `rounds` rounds with one user in every round.

  The output of a round is (clipped sum + noise) / `denominator`; the noise of one
  coordinate across the rounds has covariance `covariance` (None: not claimed), the
  coordinates independent; the accountant gives `epsilon` at `delta`.
  """

  epsilon: float
  delta: float
  clip: float
  denominator: float
  rounds: int = 1
  covariance: Optional[np.ndarray] = None

  @property
  def noise_epsilon(self) -> Optional[float]:
    """The exact epsilon of the claimed noise for a user in every round: mu-GDP with
    mu = clip * sqrt(1' Cov^-1 1) (None without a covariance)."""
    if self.covariance is None:
      return None
    ones = np.ones(self.rounds)
    mu = self.clip * math.sqrt(float(ones @ np.linalg.solve(self.covariance, ones)))
    return audit.gdp_epsilon(mu, self.delta)


@dataclasses.dataclass(frozen=True)
class Check:
  """One property the accountant assumes, measured: `ok` False names a failure."""

  name: str  # 'noise scale', 'noise correlation', 'clip', 'sampling', 'epsilon'
  measured: float
  claimed: float
  ok: bool
  detail: str  # one line: what was measured against what

  def fields(self) -> dict:
    return {'measured': _finite(self.measured), 'claimed': _finite(self.claimed),
            'ok': bool(self.ok), 'detail': self.detail}


def _finite(value) -> Any:
  return float(value) if value is not None and math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class Trials:
  """Each trial's outputs, [trials, rounds] (sum units, the users' clipped sum taken
  off), and whether its canary was present."""

  outputs: np.ndarray
  present: np.ndarray


def _user_updates(users: int, dim: int, clip: float, rng) -> tuple[np.ndarray, np.ndarray]:
  """`users` updates along a shared direction with noise, of norms 0.5 to 2 clips, and
  their sum each clipped to `clip`."""
  shared = np.ones(dim) / math.sqrt(dim)
  raw = shared + 0.5 * rng.standard_normal((users, dim)) / math.sqrt(dim)
  raw /= np.linalg.norm(raw, axis=1, keepdims=True)
  updates = raw * clip * rng.uniform(0.5, 2.0, size=(users, 1))
  norms = np.linalg.norm(updates, axis=1, keepdims=True)
  clipped = updates * np.minimum(1.0, clip / norms)
  return updates.astype(np.float32), clipped.sum(axis=0)


# Batches per TFF worker: the audit starts a fresh one after this many, and runs a chunk
# again on a fresh worker when its worker crashed (seen in the distributed audit: a
# segfault in the worker's gRPC server after many large computations).
WORKER_BATCHES = 25


def _batch(process, updates, users_sum, present, *, rounds: int, clip: float,
           denominator: float) -> np.ndarray:
  """One batch: `process` over the users and the canaries `present`, [dim, rounds]."""
  dim = len(present)
  canaries = np.zeros((dim, dim), np.float32)
  canaries[np.arange(dim), np.arange(dim)] = CANARY_NORM * clip * present
  clients = list(updates) + list(canaries)
  outputs = np.zeros((dim, rounds))
  state = process.initialize()
  for t in range(rounds):
    output = process.next(state, clients)
    state = output.state
    outputs[:, t] = np.asarray(output.result, np.float64) * denominator - users_sum
  return outputs


def run_trials(make_factory: Callable[[], Any], *, dim: int, rounds: int, trials: int,
               users: int, clip: float, denominator: float, seed: int,
               progress: Optional[Callable[[int, int], None]] = None) -> Trials:
  """Runs ceil(trials / dim) batches: each a freshly built process over `dim` canaries
  and `users` users for `rounds` rounds (module docstring), `WORKER_BATCHES` to a TFF
  worker (the one open, if any). `progress(done, total)` after each batch."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  from fl_analytics.core import runtime  # pylint: disable=g-import-not-at-top

  updates, users_sum = _user_updates(users, dim, clip,
                                     np.random.default_rng([seed, 0xA0D17]))
  batches = -(-trials // dim)
  present = np.stack([np.random.default_rng([seed, 0xCA9, b]).random(dim) < 0.5
                      for b in range(batches)])
  outputs = np.zeros((batches, dim, rounds))
  for start in range(0, batches, WORKER_BATCHES):
    for attempt in (1, 2):
      try:
        with runtime.shared_cpp_context():
          for b in range(start, min(start + WORKER_BATCHES, batches)):
            process = make_factory().create(tff.TensorType(np.float32, [dim]))
            outputs[b] = _batch(process, updates, users_sum, present[b], rounds=rounds,
                                clip=clip, denominator=denominator)
            if progress is not None:
              progress(b + 1, batches)
        break
      except runtime.WorkerExitedError:
        if attempt == 2:
          raise
  return Trials(outputs.reshape(-1, rounds), present.reshape(-1))


def _tolerance(relative: float, standard_error: float) -> float:
  return max(relative, STANDARD_ERRORS * standard_error)


def noise_scale_check(noise: np.ndarray, covariance: np.ndarray) -> Check:
  """Each round's noise stddev over the absent trials against the claimed one."""
  claimed = np.sqrt(np.diag(covariance))
  measured = noise.std(axis=0)
  ratio = np.divide(measured, claimed, out=np.full_like(measured, np.inf),
                    where=claimed > 0)
  worst = int(np.argmax(np.abs(np.log(np.maximum(ratio, 1e-300)))))
  tolerance = _tolerance(SCALE_TOLERANCE, 1 / math.sqrt(2 * len(noise)))
  ok = bool(np.all(np.abs(ratio - 1) <= tolerance))
  return Check('noise scale', float(measured[worst]), float(claimed[worst]), ok,
               f'round {worst + 1} of {len(ratio)}: noise stddev {measured[worst]:.4g} '
               f'against the claimed {claimed[worst]:.4g} (ratio {ratio[worst]:.3g}, '
               f'allowed 1 +- {tolerance:.2g}; {len(noise)} absent trials)')


def noise_correlation_check(noise: np.ndarray, covariance: np.ndarray) -> Optional[Check]:
  """The noise's correlation across rounds against the claimed (None: one round)."""
  rounds = covariance.shape[0]
  if rounds < 2:
    return None
  sd = np.sqrt(np.diag(covariance))
  claimed = covariance / np.outer(sd, sd)
  with np.errstate(divide='ignore', invalid='ignore'):
    measured = np.nan_to_num(np.corrcoef(noise, rowvar=False), nan=1.0)
  off = ~np.eye(rounds, dtype=bool)
  gap = np.where(off, np.abs(measured - claimed), 0.0)
  i, j = np.unravel_index(int(np.argmax(gap)), gap.shape)
  tolerance = _tolerance(CORRELATION_TOLERANCE, 1 / math.sqrt(len(noise)))
  return Check('noise correlation', float(measured[i, j]), float(claimed[i, j]),
               bool(gap[i, j] <= tolerance),
               f'rounds {i + 1} and {j + 1}: noise correlation {measured[i, j]:.3f} '
               f'against the claimed {claimed[i, j]:.3f} (allowed +- {tolerance:.2g})')


def clip_check(trials: Trials, clip: float) -> Check:
  """One insertion's effect on the sum against the clip, and the users' part.

  A canary of `CANARY_NORM` clips must move the sum by exactly `clip` along its
  coordinate; with the canary absent the outputs less the users' clipped sum must
  average 0 (each user clipped on its own)."""
  # Each trial's mean over its rounds: the standard errors then hold whatever the
  # noise's correlation across rounds.
  per_trial = trials.outputs.mean(axis=1)
  inside, outside = per_trial[trials.present], per_trial[~trials.present]
  shift = float(inside.mean() - outside.mean())
  shift_se = math.sqrt(inside.var() / len(inside) + outside.var() / len(outside))
  offset = float(outside.mean())
  offset_se = max(float(outside.std()) / math.sqrt(len(outside)), clip * 1e-12)
  shift_ok = abs(shift / clip - 1) <= _tolerance(SCALE_TOLERANCE, shift_se / clip)
  offset_ok = abs(offset) <= _tolerance(SCALE_TOLERANCE * clip, offset_se)
  detail = (f'an insertion of {CANARY_NORM:g} clips moves the sum by {shift:.4g} '
            f'(clip {clip:.4g}); without it the sum is off the users\' clipped sum by '
            f'{offset:.3g} per coordinate ({offset / offset_se:.1f} standard errors)')
  if not offset_ok:
    detail += ': the users\' updates are not each clipped to the clip'
  return Check('clip', shift, clip, bool(shift_ok and offset_ok), detail)


def _gdp_mu(inside: np.ndarray, outside: np.ndarray) -> tuple[float, float]:
  """(mu, its standard error): the standardized mean difference of two samples."""
  pooled = math.sqrt((inside.var(ddof=1) + outside.var(ddof=1)) / 2)
  if pooled == 0:
    return (math.inf if inside.mean() > outside.mean() else 0.0), 0.0
  mu = (inside.mean() - outside.mean()) / pooled
  n1, n2 = len(inside), len(outside)
  return mu, math.sqrt((n1 + n2) / (n1 * n2) + mu * mu / (2 * (n1 + n2)))


def _weights(noise: np.ndarray) -> np.ndarray:
  """S^-1 1 for S the held-out noise covariance, ridged so that a singular S (noise
  repeated across rounds) still gives finite weights."""
  rounds = noise.shape[1]
  if rounds == 1:
    return np.ones(1)
  cov = np.atleast_2d(np.cov(noise, rowvar=False))
  ridge = 1e-9 * max(float(np.trace(cov)) / rounds, 1e-30)
  return np.linalg.solve(cov + ridge * np.eye(rounds), np.ones(rounds))


def _best_threshold(inside, outside, *, alpha: float, delta: float) -> float:
  # Quantiles of the out scores from the median to the tail where a handful remain.
  candidates = np.quantile(outside, 1 - np.geomspace(0.5, 5 / len(outside), 100))
  bounds = [audit.epsilon_clopper_pearson(inside, outside, threshold=t, alpha=alpha,
                                          delta=delta) for t in candidates]
  return float(candidates[int(np.argmax(bounds))])


@dataclasses.dataclass(frozen=True)
class EpsilonEstimate:
  estimate: float
  interval: tuple[float, float]  # at confidence 1 - alpha
  lower_bound: float  # Clopper-Pearson, confidence 1 - alpha
  mu: float
  check_low: float  # the interval's lower end at `CHECK_CONFIDENCE`

  def fields(self) -> dict:
    return {'estimate': _finite(self.estimate),
            'interval': [_finite(v) for v in self.interval],
            'lower_bound': _finite(self.lower_bound), 'gdp_mu': _finite(self.mu)}


def estimate_epsilon(trials: Trials, *, delta: float, alpha: float,
                     seed: int) -> EpsilonEstimate:
  """The Gaussian-DP estimate with its (1 - alpha) interval and the Clopper-Pearson
  lower bound (confidence 1 - alpha), the statistic and threshold from `HOLDOUT`."""
  rng = np.random.default_rng([seed, 0xE951])
  order = rng.permutation(len(trials.present))
  held = np.zeros(len(order), bool)
  held[order[:int(HOLDOUT * len(order))]] = True
  y, present = trials.outputs, trials.present
  scores = y @ _weights(y[held & ~present])
  threshold = _best_threshold(scores[held & present], scores[held & ~present],
                              alpha=alpha, delta=delta)
  inside, outside = scores[~held & present], scores[~held & ~present]
  lower = audit.epsilon_clopper_pearson(inside, outside, threshold=threshold,
                                        alpha=alpha, delta=delta)
  mu, se = _gdp_mu(inside, outside)
  z = stats.norm.ppf(1 - alpha / 2)
  interval = (audit.gdp_epsilon(mu - z * se, delta), audit.gdp_epsilon(mu + z * se, delta))
  check_low = audit.gdp_epsilon(mu - stats.norm.ppf((1 + CHECK_CONFIDENCE) / 2) * se, delta)
  return EpsilonEstimate(audit.gdp_epsilon(mu, delta), interval, lower, mu, check_low)


def epsilon_check(found: EpsilonEstimate, claimed: float) -> Check:
  """Fails when the lower bound, or the estimate's interval at `CHECK_CONFIDENCE`, is
  wholly above the claim."""
  ok = found.lower_bound <= claimed and found.check_low <= claimed
  return Check('epsilon', found.estimate, claimed, ok,
               f'estimated epsilon {found.estimate:.3g} [{found.interval[0]:.3g}, '
               f'{found.interval[1]:.3g}], lower bound {found.lower_bound:.3g}, against '
               f'the claimed {claimed:.3g}')


@dataclasses.dataclass(frozen=True)
class Report:
  """A white-box audit's result: each property's check and the epsilon estimate."""

  label: str
  claim: Claim
  trials: int
  checks: tuple[Check, ...]
  epsilon: EpsilonEstimate

  @property
  def failed(self) -> tuple[str, ...]:
    return tuple(c.name for c in self.checks if not c.ok)

  @property
  def ok(self) -> bool:
    return not self.failed

  def verdict(self) -> str:
    if self.ok:
      return 'consistent with claim'
    return 'fails: ' + ', '.join(self.failed)

  def fields(self) -> dict:
    return {'label': self.label, 'trials': self.trials, 'rounds': self.claim.rounds,
            'claimed_epsilon': _finite(self.claim.epsilon), 'delta': self.claim.delta,
            'noise_epsilon': _finite(self.claim.noise_epsilon),
            'epsilon': self.epsilon.fields(), 'verdict': self.verdict(),
            'checks': {c.name: c.fields() for c in self.checks}}


def analyse(trials: Trials, claim: Claim, *, alpha: float, seed: int, label: str = '',
            extra: tuple[Check, ...] = ()) -> Report:
  """Every check of `trials` against `claim` (and `extra` checks, e.g. sampling)."""
  noise = trials.outputs[~trials.present]
  checks = [clip_check(trials, claim.clip)]
  if claim.covariance is not None:
    checks.insert(0, noise_scale_check(noise, claim.covariance))
    correlation = noise_correlation_check(noise, claim.covariance)
    checks[1:1] = [correlation] if correlation is not None else []
  found = estimate_epsilon(trials, delta=claim.delta, alpha=alpha, seed=seed)
  checks += [*extra, epsilon_check(found, claim.epsilon)]
  return Report(label, claim, len(trials.present), tuple(checks), found)


def audit_factory(make_factory: Callable[[], Any], claim: Claim, *, trials: int = 10_000,
                  dim: int = 1000, users: int = 20, seed: int = 0, alpha: float = 0.05,
                  label: str = '', extra: tuple[Check, ...] = (),
                  progress: Optional[Callable[[int, int], None]] = None) -> Report:
  """Audits any `tff.aggregators` unweighted factory against a caller's `claim`.

  `make_factory()` builds the factory afresh for each batch of `dim` trials (so each
  batch draws fresh noise); the value aggregated is one float32 vector of `dim`
  coordinates and each round's clients are `users` + `dim`, so `claim.denominator` is
  what the factory divides that sum by (e.g. its `clients_per_round`). This is how a
  new mechanism is audited before it is registered (`docs/audit.md`)."""
  if dim < 2 or trials < dim:
    raise ValueError(f'dim must be >= 2 and trials >= dim. Found dim={dim}, '
                     f'trials={trials}.')
  found = run_trials(make_factory, dim=dim, rounds=claim.rounds, trials=trials,
                     users=users, clip=claim.clip, denominator=claim.denominator,
                     seed=seed, progress=progress)
  return analyse(found, claim, alpha=alpha, seed=seed, label=label, extra=extra)


def _audited_sampling(m: mechanisms.Mechanism) -> str:
  return next(s for s in ('poisson', 'fixed_size', 'min_separation')
              if s in m.samplings)


def audit_settings(settings: mechanisms.DpSettings, *, rounds: int,
                   cohort: int) -> mechanisms.DpSettings:
  """`settings` for the audited pattern: `cohort` clients, every one in each of `rounds`
  rounds (sampling probability 1, or k = rounds participations 1 apart), the PLD
  accountant where the mechanism allows it, fresh noise, and the sensitivity factor of
  its secure sum or compression over `num_parameters` (the audit's vector)."""
  m = mechanisms.get(settings.mechanism)
  if not m.private:
    raise ValueError(f'dp.mechanism={m.name} adds no noise: there is no claim to audit.')
  if m.audit_rounds is not None and rounds > m.audit_rounds:
    raise ValueError(f'dp.mechanism={m.name} is audited over at most {m.audit_rounds} '
                     f'round(s) (its noise follows a clip that moves). Found {rounds}.')
  scheme = _audited_sampling(m)
  pld = 'pld' in m.accountants and 'pld' in sampling.get(scheme).accountants
  from fl_analytics.privacy import statement  # pylint: disable=g-import-not-at-top

  dim = settings.num_parameters
  audited = dataclasses.replace(
      settings, sampling=scheme, accountant='pld' if pld else 'rdp',
      clients_per_round=float(cohort), population_size=cohort, planned_rounds=rounds,
      participation=sampling.Participation(max_participations=rounds, min_separation=1),
      derived=None, noise_seed=None, sensitivity_factor=statement.sensitivity_factor(
          secure_sum=settings.secure_sum, compression_bits=settings.compression_bits,
          compression_threshold=settings.compression_threshold,
          tensor_sizes=[dim] if dim else [1]))
  return m.resolve(audited)


def claim_of(settings: mechanisms.DpSettings, rounds: int) -> Claim:
  """The accountant's and the mechanism's claim for audited `settings`."""
  from fl_analytics.privacy import statement  # pylint: disable=g-import-not-at-top

  m = mechanisms.get(settings.mechanism)
  covariance = (m.noise_covariance(settings, rounds)
                if m.noise_covariance is not None else None)
  return Claim(epsilon=statement.epsilon(settings, rounds), delta=settings.delta,
               clip=settings.clip, denominator=settings.clients_per_round, rounds=rounds,
               covariance=covariance)


def label(settings: mechanisms.DpSettings) -> str:
  """The mechanism's name, with its secure sum or compression: an audit's label."""
  return settings.mechanism + (' + secure sum' if settings.secure_sum else '') + (
      f' + {settings.compression_bits}-bit compression' if settings.compression_bits
      else '')


def prepare(settings: mechanisms.DpSettings, *, rounds: int, dim: int,
            users: int) -> tuple[mechanisms.DpSettings, Claim]:
  """The audited settings (`audit_settings`, checked as a run's are) and their claim."""
  audited = audit_settings(dataclasses.replace(settings, num_parameters=dim),
                           rounds=rounds, cohort=users + dim)
  aggregators.check_compression(mechanism=audited.mechanism, bits=audited.compression_bits,
                                threshold=audited.compression_threshold,
                                secure_sum=audited.secure_sum)
  aggregators.check_secure_sum(audited.mechanism, audited.secure_sum)
  aggregators.check(audited)
  return audited, claim_of(audited, rounds)


def audit_mechanism(settings: mechanisms.DpSettings, *, rounds: int = 1,
                    trials: int = 10_000, dim: int = 1000, users: int = 20,
                    seed: int = 0, alpha: float = 0.05, noise_seed: Optional[int] = None,
                    sampling_rounds: int = 0, fault: Optional[Callable] = None,
                    sampler: Optional[Callable[..., np.ndarray]] = None,
                    progress: Optional[Callable[[int, int], None]] = None) -> Report:
  """The white-box audit of a registered mechanism with `settings`' noise multiplier,
  clip and own keys, over `rounds` rounds with the canary in each; with
  `sampling_rounds`, also `settings`' sampling over that many rounds of its
  population (`sampler`: a draw under test instead of the scheme's). `fault(audited
  settings, dim) -> make_factory` audits a broken aggregator against the mechanism's
  claim (`fl_analytics.privacy.sabotage`)."""
  audited, claim = prepare(settings, rounds=rounds, dim=dim, users=users)
  extra = (sampling_check(settings, rounds=sampling_rounds, seed=seed, draw=sampler),
           ) if sampling_rounds else ()
  make_factory = (fault(audited, dim) if fault is not None
                  else aggregators.vector_factories(audited, dim, noise_seed))
  return audit_factory(make_factory, claim, trials=trials, dim=dim, users=users,
                       seed=seed, alpha=alpha, label=label(audited), extra=extra,
                       progress=progress)


def clip_probe(settings: mechanisms.DpSettings, *, dim: int = 200,
               users: int = 10) -> Check:
  """The clip check alone, on one round of `settings`' aggregator as training builds
  it (a few seconds): what a diverging run asks before it blames the learning rate."""
  audited, claim = prepare(settings, rounds=1, dim=dim, users=users)
  found = run_trials(aggregators.vector_factories(audited, dim), dim=dim, rounds=1, trials=dim,
                     users=users, clip=claim.clip, denominator=claim.denominator, seed=0)
  return clip_check(found, claim.clip)


def sampling_check(settings: mechanisms.DpSettings, *, rounds: int, seed: int = 0,
                   draw: Optional[Callable[..., np.ndarray]] = None) -> Check:
  """Each user's participations in `rounds` of the scheme's cohorts (`draw`: the
  scheme's own, or a sampler under test) against what the accountant assumes: the
  bounds (k, b) of a schedule, or for a sampled scheme the rate q = clients_per_round /
  population_size and the binomial spread of a user's count (the same users every
  round spread far more)."""
  scheme = settings.scheme
  n, m = settings.population_size, settings.clients_per_round
  draw = draw or scheme.draw
  bounds = settings.bounds(rounds)
  check = sampling.ParticipationCheck(n, bounds)
  counts = np.zeros(n)
  try:
    for t in range(1, rounds + 1):
      users = draw(population_size=n, clients_per_round=m, seed=seed, round_num=t,
                   participation=settings.participation)
      check.record(t, users)
      counts[users] += 1
  except sampling.ParticipationError as e:
    return Check('sampling', float(counts.max()), float(bounds[0]), False, str(e))
  if bounds is not None:
    return Check('sampling', float(counts.max()), float(bounds[0]), True,
                 f'at most {int(counts.max())} participations, at least '
                 f'{check.fields()["min_separation_seen"]} rounds apart, within the '
                 f'bounds k={bounds[0]}, b={bounds[1]}')
  return _rate_check(counts, q=m / n, rounds=rounds)


def _rate_check(counts: np.ndarray, *, q: float, rounds: int) -> Check:
  n = len(counts)
  rate = counts.sum() / (n * rounds)
  rate_se = math.sqrt(q * (1 - q) / (n * rounds)) / q
  spread = counts.var() / max(rounds * q * (1 - q), 1e-300)
  rate_ok = abs(rate / q - 1) <= _tolerance(0.02, rate_se)
  spread_ok = spread <= 1 + _tolerance(0.1, math.sqrt(2 / n))
  return Check('sampling', rate, q, bool(rate_ok and spread_ok),
               f'participation rate {rate:.4g} per round against the accounted '
               f'{q:.4g} (ratio {rate / q:.3g}); a user\'s count varies '
               f'{spread:.3g} times as much as Binomial({rounds}, q)')


def _scheme_settings(config, scheme: str) -> mechanisms.DpSettings:
  """A scheme's cohorts as `config` samples them (min_separation: 10 groups)."""
  return mechanisms.settings(
      mechanism='gaussian_fixed', sampling=scheme, noise_multiplier=1.0,
      population_size=int(config.population_size),
      clients_per_round=float(config.clients_per_round),
      participation=sampling.Participation(
          min_separation=10 if scheme == 'min_separation' else 1))


def audit_suite(config, *, log: Callable[[str], None] = print) -> dict:
  """`configs/audit_mechanisms.py`'s audits: each mechanism, each fault of
  `fl_analytics.privacy.sabotage` and every sampling scheme, as one JSON-ready dict."""
  from fl_analytics.privacy import sabotage  # pylint: disable=g-import-not-at-top

  common = dict(dim=int(config.dim), users=int(config.users), seed=int(config.seed),
                alpha=float(config.alpha))

  def settings(mechanism, params):
    return mechanisms.settings(mechanism=mechanism, clip=float(config.clip),
                               noise_multiplier=float(config.noise_multiplier),
                               delta=float(config.delta), **dict(params))

  def progress(label):
    return lambda done, total: log(f'  {label}: batch {done} of {total}')

  results = {'mechanisms': [], 'faults': [], 'sampling': {}}
  for a in config.audits:
    report = audit_mechanism(settings(a.mechanism, a.params), rounds=int(a.rounds),
                             trials=int(a.trials), progress=progress(a.mechanism),
                             **common)
    results['mechanisms'].append(report.fields())
    log(f'{report.label}, {a.rounds} round(s): {report.verdict()}')
  for name, fault in sabotage.AGGREGATOR_FAULTS.items():
    report = audit_mechanism(settings('gaussian_fixed', {}), fault=fault,
                             rounds=int(config.fault_rounds),
                             trials=int(config.fault_trials), progress=progress(name),
                             **common)
    results['faults'].append({**report.fields(), 'label': name})
    log(f'fault "{name}": {report.verdict()}')
  for scheme in sampling.SCHEMES:
    check = sampling_check(_scheme_settings(config, scheme),
                           rounds=int(config.sampling_rounds), seed=int(config.seed))
    results['sampling'][scheme] = check.fields()
  fault = sampling_check(_scheme_settings(config, 'poisson'),
                         rounds=int(config.sampling_rounds), seed=int(config.seed),
                         draw=sabotage.tenfold_sampler)
  results['sampling_faults'] = {'sampled at ten times the accounted rate': fault.fields()}
  return results
