"""The canary statistics of `fl_analytics.privacy.audit`, on simulated Gaussian releases.

One release of the sum of K unit canaries plus Gaussian noise of stddev z (the Gaussian
mechanism of sensitivity 1, the per-canary view of a DP round): the estimate must see
canaries without noise, stay consistent with a correct claim, and flag a mechanism
whose noise is ten times smaller than the claim assumes.
"""

import dp_accounting
import numpy as np
import pytest
from scipy import stats

from fl_analytics.privacy import audit

DIM, CANARIES, DELTA = 5000, 500, 1e-5


def _claimed(z: float) -> float:
  accountant = dp_accounting.rdp.RdpAccountant()
  accountant.compose(dp_accounting.GaussianDpEvent(z))
  return accountant.get_epsilon(DELTA)


def _release(z: float, seed: int) -> audit.Estimate:
  directions = audit.canary_directions(2 * CANARIES, DIM, seed=seed)
  seen, unseen = directions[:CANARIES], directions[CANARIES:]
  update = seen.sum(axis=0) + z * np.random.default_rng([seed, 1]).standard_normal(DIM)
  return audit.estimate(audit.cosines(seen, update), audit.cosines(unseen, update),
                        dim=DIM, delta=DELTA)


def test_null_tail_is_that_of_random_directions():
  u = audit.canary_directions(100000, 50, seed=3)[:, 0]
  for t in (-0.2, 0.0, 0.1, 0.3):
    assert np.exp(audit.null_log_sf(t, 50)) == pytest.approx(np.mean(u >= t), abs=0.003)
  # In high dimensions the cosine is N(0, 1/d).
  assert np.exp(audit.null_log_sf(0.02, 20000)) == pytest.approx(
      stats.norm.sf(0.02, scale=20000**-0.5), rel=0.01)


@pytest.mark.parametrize('seed', [0, 1])
def test_without_noise_the_canaries_are_plainly_visible(seed):
  e = _release(0.0, seed)
  assert e.epsilon > 10 and e.lower_bound > 5 and e.exceeds(_claimed(2.0))
  # The unseen canaries follow the null: mean 0, spread 1 / sqrt(d).
  assert abs(e.unseen_mean) < 3 * DIM**-0.5 / np.sqrt(CANARIES)
  assert e.unseen_std == pytest.approx(DIM**-0.5, rel=0.1)


@pytest.mark.parametrize('seed', [0, 1])
def test_correct_noise_is_consistent_with_its_claim(seed):
  claim = _claimed(2.0)  # 2.17 at delta 1e-5
  e = _release(2.0, seed)
  assert e.lower_bound <= claim and not e.exceeds(claim)
  assert e.epsilon > 0.5 * claim  # the canaries are seen, to about the right extent


@pytest.mark.parametrize('seed', [0, 1])
def test_noise_ten_times_too_small_is_flagged(seed):
  claim = _claimed(2.0)  # what an accountant that believes z = 2 claims
  e = _release(0.2, seed)
  assert e.exceeds(claim) and e.lower_bound > 2 * claim


def test_bad_inputs_are_refused():
  with pytest.raises(ValueError, match='dim must be an integer >= 2'):
    audit.null_log_sf(0.1, 1)
  with pytest.raises(ValueError, match='At least 2 seen canaries'):
    audit.epsilon_estimate([0.1], dim=10, delta=DELTA)
  with pytest.raises(ValueError, match='delta must be in'):
    audit.epsilon_lower_bound([0.1, 0.2], dim=10, delta=2.0)


def _max_over_rounds(z: float, seed: int, rounds: int = 5):
  """The all-iterates statistic: each canary's largest cosine with `rounds` releases."""
  directions = audit.canary_directions(2 * CANARIES, DIM, seed=seed)
  rng = np.random.default_rng([seed, 2])
  best = np.full(2 * CANARIES, -np.inf)
  for _ in range(rounds):
    update = directions[:CANARIES].sum(axis=0) + z * rng.standard_normal(DIM)
    best = np.maximum(best, audit.cosines(directions, update))
  return best[:CANARIES], best[CANARIES:]


def test_all_iterates_with_an_empirical_null_sees_and_flags_like_the_exact_one():
  seen, unseen = _max_over_rounds(0.0, 0)
  plain = audit.estimate_empirical_null(seen, unseen, delta=DELTA)
  assert plain.dim is None and plain.epsilon > 10
  # The unseen canaries alone can certify at most about log(U / 2) (U / 2 = 250 here).
  assert 3 < plain.lower_bound < np.log(CANARIES / 2) + 1
  # A claim below that cap (z = 8 over 5 releases: 1.14) is checked and can be refuted.
  claim = _claimed_rounds(8.0, 5)
  correct = audit.estimate_empirical_null(*_max_over_rounds(8.0, 1), delta=DELTA)
  assert correct.lower_bound <= claim and not correct.exceeds(claim)
  broken = audit.estimate_empirical_null(*_max_over_rounds(0.8, 1), delta=DELTA)
  assert broken.exceeds(claim)


def _claimed_rounds(z: float, rounds: int) -> float:
  accountant = dp_accounting.rdp.RdpAccountant()
  accountant.compose(dp_accounting.GaussianDpEvent(z), rounds)
  return accountant.get_epsilon(DELTA)


def test_perfect_separation_is_infinite_for_the_exact_null_and_capped_for_unseen():
  assert audit.epsilon_lower_bound(np.ones(100), dim=577, delta=DELTA) == np.inf
  capped = audit.epsilon_lower_bound(np.ones(100), delta=DELTA,
                                     unseen_cosines=np.zeros(100))
  assert 2 < capped < np.log(50)
  assert audit.Estimate(np.inf, (1.0, np.inf), np.inf, 0, 0, 0, 0, 2, 10).as_dict(
      1.0)['epsilon_estimate'] is None  # JSON has no infinity: None


def test_membership_inference_on_separated_and_identical_losses():
  rng = np.random.default_rng(0)
  members, others = rng.normal(0.0, 1.0, 20000), rng.normal(3.0, 1.0, 20000)
  result = audit.membership_inference(members, others)
  assert result['auc'] == pytest.approx(stats.norm.cdf(3 / np.sqrt(2)), abs=0.01)
  assert result['tpr_at_fpr']['0.01'] == pytest.approx(
      stats.norm.cdf(3 - stats.norm.isf(0.01)), abs=0.03)
  same = audit.membership_inference(others[:500], others[500:1000])
  assert same['auc'] == pytest.approx(0.5, abs=0.05)
  # Too few non-members to measure a TPR at FPR 0.001.
  assert same['tpr_at_fpr']['0.001'] is None
  with pytest.raises(ValueError, match='needs members and non-members'):
    audit.membership_inference([], [1.0])


def _jax_privacy_cases():
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top

  from tests.helpers import REPO  # pylint: disable=g-import-not-at-top

  with open(os.path.join(REPO, 'results', 'reference_values', 'jax_privacy_audit.json')) as f:
    return json.load(f)['cases']


def test_clopper_pearson_and_one_run_bounds_are_jax_privacys_on_its_scores():
  # results/reference_values/jax_privacy_audit.json: jax-privacy 2.0.0's
  # CanaryScoreAuditor at explicit thresholds (tools/audit_reference.py, run in its own
  # virtualenv by `make audit-reference`), on the scores it holds.
  compared = 0
  for case in _jax_privacy_cases():
    for v in case['values']:
      kw = dict(threshold=v['threshold'], alpha=v['significance'], delta=v['delta'])
      assert audit.epsilon_clopper_pearson(case['in_scores'], case['out_scores'], **kw) \
          == pytest.approx(v['epsilon_clopper_pearson'], abs=1e-3)
      if v['epsilon_one_run'] is not None:
        assert audit.epsilon_one_run(case['in_scores'], case['out_scores'], **kw) \
            == pytest.approx(v['epsilon_one_run'], abs=1e-3)
        compared += v['epsilon_one_run'] > 0.5
  assert compared >= 6  # the comparison is not of zeros


def test_the_gdp_bound_is_jax_privacys_over_absolute_values_and_ours_keeps_the_positive():
  """jax-privacy 2.0.0's `epsilon_from_gdp` on the same scores (tools/audit_reference.py)
  is the largest absolute mu bound, converted: ours gives its numbers that way. A
  negative bound certifies nothing, so ours keeps the positive ones, which stay below
  the exact epsilon of the scores' own mu; jax-privacy's certify 2.87 for two samples
  of the same distribution and more than the exact 4.38 at mu = 1."""
  checked = 0
  for case in _jax_privacy_cases():
    for g in case['gdp']:
      kw = dict(alpha=g['significance'], delta=g['delta'])
      bounds = audit.gdp_mu_bounds(case['in_scores'], case['out_scores'], **kw)
      jax_like = min(audit.gdp_epsilon(float(np.max(np.abs(bounds))), g['delta']), 100.0)
      assert jax_like == pytest.approx(g['epsilon_from_gdp'], abs=1e-3)
      ours = audit.epsilon_from_gdp(case['in_scores'], case['out_scores'], **kw)
      exact = audit.gdp_epsilon(case['mu'], g['delta']) if case['mu'] else 0.0
      assert ours <= exact, (case['mu'], ours, exact)
      checked += 1
  assert checked == 8
  same = _jax_privacy_cases()[0]
  assert same['mu'] == 0 and same['gdp'][0]['epsilon_from_gdp'] > 2
  assert audit.epsilon_from_gdp(same['in_scores'], same['out_scores'], alpha=0.05,
                                delta=1e-5) == 0


def test_the_one_run_bound_grows_with_right_guesses_and_delta_weakens_it():
  p = [audit.one_run_p_value(1000, 100, c, 1.0, 0.0) for c in (60, 75, 90)]
  assert p[0] > p[1] > p[2]
  assert audit.one_run_p_value(1000, 100, 90, 1.0, 1e-5) > p[2]
  with pytest.raises(ValueError, match=r'delta must be in \[0, 1\)'):
    audit.epsilon_one_run([1.0], [0.0], threshold=0.5, alpha=0.05, delta=-1)
