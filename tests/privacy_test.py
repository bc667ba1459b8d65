"""Accounting: values computed with dp_accounting directly, pinned numbers, calibration."""

import math

import dp_accounting
import pytest

from fl_analytics import privacy


def test_epsilon_equals_dp_accounting_rdp_of_poisson_gaussian_rounds():
  accountant = dp_accounting.rdp.RdpAccountant()
  accountant.compose(
      dp_accounting.PoissonSampledDpEvent(0.05, dp_accounting.GaussianDpEvent(1.1)), 40)
  expected = accountant.get_epsilon(1e-5)
  got = privacy.epsilon_spent(
      noise_multiplier=1.1, sampling_probability=0.05, rounds=40, delta=1e-5)
  assert got == pytest.approx(expected, rel=1e-12)


def test_epsilon_matches_pinned_value():
  # dp_accounting 0.4.3 RDP, q=0.01, z=1.0, 1000 rounds, delta=1e-5.
  got = privacy.epsilon_spent(
      noise_multiplier=1.0, sampling_probability=0.01, rounds=1000, delta=1e-5)
  assert got == pytest.approx(2.1013652716430564, rel=1e-6)


def test_epsilon_below_analytic_bound_of_unsampled_gaussian():
  # Without sampling (q=1), T Gaussian rounds are one Gaussian with z/sqrt(T);
  # RDP gives eps <= T/(2 z^2) + sqrt(2 T/z^2 log(1/delta)) (Mironov 2017, Prop. 3).
  z, t, delta = 2.0, 10, 1e-5
  got = privacy.epsilon_spent(
      noise_multiplier=z, sampling_probability=1.0, rounds=t, delta=delta)
  bound = t / (2 * z**2) + math.sqrt(2 * t / z**2 * math.log(1 / delta))
  assert 0 < got <= bound


def test_epsilon_grows_with_rounds_and_shrinks_with_noise():
  eps = [privacy.epsilon_spent(noise_multiplier=1.0, sampling_probability=0.05,
                               rounds=t) for t in (1, 10, 100)]
  assert eps[0] < eps[1] < eps[2]
  assert privacy.epsilon_spent(
      noise_multiplier=2.0, sampling_probability=0.05, rounds=10) < eps[1]


def test_zero_rounds_spend_nothing_and_zero_noise_is_unbounded():
  assert privacy.epsilon_spent(
      noise_multiplier=1.0, sampling_probability=0.1, rounds=0) == 0.0
  assert math.isinf(privacy.epsilon_spent(
      noise_multiplier=0.0, sampling_probability=0.1, rounds=5))


@pytest.mark.parametrize('target', [0.5, 2.0, 8.0])
def test_calibration_round_trip_hits_target(target):
  z = privacy.calibrate_noise_multiplier(
      target_epsilon=target, sampling_probability=0.05, rounds=30, delta=1e-5)
  eps = privacy.epsilon_spent(
      noise_multiplier=z, sampling_probability=0.05, rounds=30, delta=1e-5)
  assert eps <= target
  assert eps == pytest.approx(target, rel=1e-2)


def test_sampling_probability_refuses_cohort_larger_than_population():
  with pytest.raises(ValueError, match=r'clients_per_round must be in \(0, population'):
    privacy.sampling_probability(clients_per_round=200, population_size=100)


def test_privacy_statement_names_what_is_protected():
  s = privacy.privacy_statement(
      mechanism='gaussian_fixed', noise_multiplier=1.0, clients_per_round=10,
      population_size=100, rounds=5, delta=1e-5)
  assert s['unit_of_privacy'].startswith("one user's whole data")
  assert s['sampling'] == 'poisson' and s['accountant'] == 'rdp'
  assert s['sampling_probability'] == pytest.approx(0.1)
  assert s['epsilon'] == pytest.approx(privacy.epsilon_spent(
      noise_multiplier=1.0, sampling_probability=0.1, rounds=5, delta=1e-5))


def test_non_private_statement_has_no_epsilon():
  s = privacy.privacy_statement(
      mechanism='none', noise_multiplier=0.0, clients_per_round=10,
      population_size=100, rounds=5)
  assert s['epsilon'] is None and s['differentially_private'] is False


def test_privacy_module_does_not_import_tensorflow():
  import subprocess
  import sys
  code = ('import sys, fl_analytics.privacy, fl_analytics.rundir, fl_analytics.data.clients;'
          'sys.exit(1 if "tensorflow" in sys.modules else 0)')
  assert subprocess.run([sys.executable, '-c', code]).returncode == 0
