"""The matrix-factorization mechanisms (banded, BLT) against jax-privacy's reference
values (results/reference_values/jax_privacy_mf.json, made by tools/mf_reference.py in
its own environment), against brute force, and their noise against the factorization."""

import itertools
import json
import os

import numpy as np
import pytest
from scipy import optimize as scipy_optimize

from fl_analytics.privacy import matrix_factorization as mf
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import sampling
from fl_analytics.privacy import statement
from tests.helpers import REPO

with open(os.path.join(REPO, 'results', 'reference_values', 'jax_privacy_mf.json')) as f:
  REFERENCE = json.load(f)
SETTINGS = REFERENCE['settings']
IDS = [f"n{s['n']}-k{s['max_participations']}-b{s['min_sep']}" for s in SETTINGS]


def _check_quantities(row, coefs, noising, n, k, b):
  np.testing.assert_allclose(noising, row['noising_coefs'], rtol=1e-6, atol=1e-12)
  assert mf.minsep_sensitivity_squared(coefs, n, b, k) == pytest.approx(
      row['sensitivity_squared'], rel=1e-6)
  errors = mf.per_query_error(noising)
  assert errors.max() == pytest.approx(row['max_error'], rel=1e-6)
  assert errors.mean() == pytest.approx(row['mean_error'], rel=1e-6)
  assert mf.error_from_inverse(noising, 'max') == pytest.approx(row['max_error'], rel=1e-6)
  assert mf.error_from_inverse(noising, 'mean') == pytest.approx(row['mean_error'],
                                                                 rel=1e-6)


@pytest.mark.parametrize('setting', SETTINGS, ids=IDS)
def test_blt_coefficients_inverse_sensitivity_and_error_match_jax_privacy(setting):
  n, k, b = setting['n'], setting['max_participations'], setting['min_sep']
  row = setting['blt']
  coefs = mf.blt_coefs(row['buf_decay'], row['output_scale'], n)
  np.testing.assert_allclose(coefs, row['coefs'], rtol=1e-6)
  # jax-privacy inverts the BLT by diagonalizing; here it is a rational filter.
  noising = mf.blt_inverse_coefs(row['buf_decay'], row['output_scale'], n)
  _check_quantities(row, coefs, noising, n, k, b)
  params = np.concatenate([row['buf_decay'], row['output_scale']])
  assert mf.blt_loss(params, n, b, k) == pytest.approx(row['loss'], rel=1e-6)


@pytest.mark.parametrize('setting', SETTINGS, ids=IDS)
def test_banded_inverse_sensitivity_and_error_match_jax_privacy(setting):
  n, k, b = setting['n'], setting['max_participations'], setting['min_sep']
  row = setting['banded']
  assert len(row['coefs']) == row['bands'] == b
  _check_quantities(row, row['coefs'], mf.inverse_coefs(row['coefs'], n), n, k, b)
  loss, _ = mf.banded_loss_and_grad(np.array(row['coefs']), n, b, k)
  assert loss == pytest.approx(row['loss'], rel=1e-6)


@pytest.mark.parametrize('setting', SETTINGS, ids=IDS)
def test_optimized_strategies_are_as_good_as_jax_privacys(setting):
  """Different optimizers, same problem: within 0.1% of jax-privacy's loss, or better."""
  n, k, b = setting['n'], setting['max_participations'], setting['min_sep']
  blt = mf.optimize_blt(n, b, k)
  banded = mf.optimize_banded(n, b, b, k)
  assert blt.loss <= 1.001 * setting['blt']['loss']
  assert banded.loss <= 1.001 * setting['banded']['loss']
  # Either beats independent noise in every round by far.
  assert max(blt.loss, banded.loss) < mf.identity(n, b, k).loss / 5


def test_gaussian_epsilon_matches_the_oracles_dp_accounting():
  for row in REFERENCE['gaussian']:
    settings = mechanisms.settings(
        mechanism='blt', noise_multiplier=row['noise_multiplier'], clients_per_round=10,
        population_size=10**6, sampling='min_separation', delta=row['delta'],
        participation=sampling.Participation(min_separation=10), planned_rounds=40)
    assert statement.epsilon(settings, 40) == pytest.approx(row['rdp_epsilon'], rel=1e-6)


def test_minsep_sensitivity_is_the_worst_participation_pattern():
  """Brute force over every pattern of at most k rounds at least b apart: exact for
  non-negative non-increasing coefficients, an upper bound for any."""
  n, b, k = 11, 3, 3
  patterns = [p for size in range(1, k + 1)
              for p in itertools.combinations(range(n), size)
              if all(j - i >= b for i, j in zip(p, p[1:]))]
  rng = np.random.default_rng(0)
  for coefs in (mf.optimal_max_error_coefs(n), np.sort(rng.random(5))[::-1],
                rng.normal(size=n)):
    c = np.zeros((n, n))
    for i in range(n):
      c[i:, i] = np.pad(coefs, (0, n))[:n - i]
    worst = max(np.sum(c[:, list(p)], axis=1) @ np.sum(c[:, list(p)], axis=1)
                for p in patterns)
    bound = mf.minsep_sensitivity_squared(coefs, n, b, k)
    if np.all(np.diff(coefs) <= 0) and np.all(coefs >= 0):
      assert bound == pytest.approx(worst, rel=1e-12)
    else:
      assert bound >= worst - 1e-12


@pytest.mark.parametrize('error', mf.ERRORS)
def test_banded_gradient_matches_finite_differences(error):
  coefs = mf.optimal_max_error_coefs(9) * np.linspace(1, 0.6, 9)
  fun = lambda c: mf.banded_loss_and_grad(c, 40, 9, 3, error)
  numeric = scipy_optimize.approx_fprime(coefs, lambda c: fun(c)[0], 1e-7)
  np.testing.assert_allclose(fun(coefs)[1], numeric, rtol=1e-4, atol=1e-6)


def test_toeplitz_inverse_is_the_matrix_inverse():
  coefs = np.array([1.0, 0.6, 0.3, 0.1])
  n = 7
  c = sum(np.diag(np.full(n - j, v), -j) for j, v in enumerate(coefs))
  np.testing.assert_allclose(mf.inverse_coefs(coefs, n), np.linalg.inv(c)[:, 0],
                             atol=1e-12)


@pytest.mark.parametrize('kind', ['blt', 'banded'])
def test_generated_noise_is_c_inverse_of_white_noise(kind):
  """The query's noise, round by round: C applied to it gives back uncorrelated
  Gaussian draws of the configured stddev, and its correlation across rounds is
  C^{-1} C^{-T}'s."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from fl_analytics.privacy import correlated_noise  # pylint: disable=g-import-not-at-top

  n, width, stddev = 12, 4000, 0.5
  strategy = (mf.optimize_blt(n, 4, 3) if kind == 'blt' else mf.optimize_banded(n, 4, 4, 3))
  query = correlated_noise.CorrelatedNoiseSumQuery(
      1.0, stddev, strategy, [tf.TensorSpec([width], tf.float32)], seed=3)
  state = query.initial_global_state()
  zero = [tf.zeros([width])]
  noise = []
  for _ in range(n):
    result, state, _ = query.get_noised_result(zero, state)
    noise.append(result[0].numpy())
  w = np.array(noise, dtype=np.float64)  # rounds x coordinates
  coefs = strategy.toeplitz_coefs(n)
  c = sum(np.diag(np.full(n - j, v), -j) for j, v in enumerate(coefs))
  z = c @ w
  np.testing.assert_allclose(np.cov(z), stddev**2 * np.eye(n), atol=0.03)
  c_inv = np.linalg.inv(c)
  np.testing.assert_allclose(np.cov(w), stddev**2 * c_inv @ c_inv.T, atol=0.04)
