"""Accounting: values computed with dp_accounting directly, pinned numbers, calibration."""

import dataclasses
import json
import math

import dp_accounting
from dp_accounting.rdp import rdp_privacy_accountant
import numpy as np
import pytest

from fl_analytics.privacy import accounting
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import statement
from fl_analytics.privacy.mechanisms import distributed

REPLACE_SPECIAL = dp_accounting.NeighboringRelation.REPLACE_SPECIAL


def test_epsilon_equals_dp_accounting_rdp_of_poisson_gaussian_rounds():
  accountant = dp_accounting.rdp.RdpAccountant()
  accountant.compose(
      dp_accounting.PoissonSampledDpEvent(0.05, dp_accounting.GaussianDpEvent(1.1)), 40)
  expected = accountant.get_epsilon(1e-5)
  got = statement.epsilon_spent(
      noise_multiplier=1.1, clients_per_round=20, population_size=400, rounds=40,
      delta=1e-5)
  assert got == pytest.approx(expected, rel=1e-12)


def test_fixed_size_epsilon_equals_rdp_replace_one_with_doubled_sensitivity():
  accountant = dp_accounting.rdp.RdpAccountant(
      neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
  accountant.compose(dp_accounting.SampledWithoutReplacementDpEvent(
      400, 20, dp_accounting.GaussianDpEvent(1.1 / 2)), 40)
  expected = accountant.get_epsilon(1e-5)
  got = statement.epsilon_spent(
      noise_multiplier=1.1, clients_per_round=20, population_size=400, rounds=40,
      delta=1e-5, sampling='fixed_size')
  assert got == pytest.approx(expected, rel=1e-12)


def test_pld_epsilon_equals_dp_accounting_pld():
  accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
  accountant.compose(dp_accounting.PoissonSampledDpEvent(
      0.05, dp_accounting.GaussianDpEvent(1.1)), 40)
  got = statement.epsilon_spent(
      noise_multiplier=1.1, clients_per_round=20, population_size=400, rounds=40,
      delta=1e-5, accountant='pld')
  assert got == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-12)


@pytest.mark.parametrize('z, q, rounds', [(0.8, 0.01, 1000), (1.0, 0.0644, 40),
                                          (2.0, 0.2, 100), (5.0, 1.0, 10)])
def test_pld_never_above_rdp_for_poisson(z, q, rounds):
  kw = dict(noise_multiplier=z, clients_per_round=q * 1000, population_size=1000,
            rounds=rounds, delta=1e-5)
  assert statement.epsilon_spent(accountant='pld', **kw) <= statement.epsilon_spent(
      accountant='rdp', **kw)


def test_pld_with_fixed_size_is_refused_not_answered():
  with pytest.raises(ValueError, match='pld accountant cannot analyse fixed_size'):
    statement.epsilon_spent(noise_multiplier=1.0, clients_per_round=10,
                          population_size=100, rounds=5, accountant='pld',
                          sampling='fixed_size')


def test_unknown_accountant_and_sampling_are_refused():
  with pytest.raises(ValueError, match="accountant must be one of rdp, pld. Found 'gdp'"):
    statement.check_accounting(accountant='gdp', sampling='poisson')
  with pytest.raises(ValueError, match="sampling must be one of poisson, fixed_size, "
                     "shuffle, min_separation, available. Found 'cyclic'"):
    statement.check_accounting(accountant='rdp', sampling='cyclic')


def test_epsilon_matches_pinned_value():
  # dp_accounting 0.4.3 RDP, q=0.01, z=1.0, 1000 rounds, delta=1e-5.
  got = statement.epsilon_spent(
      noise_multiplier=1.0, clients_per_round=10, population_size=1000, rounds=1000,
      delta=1e-5)
  assert got == pytest.approx(2.1013652716430564, rel=1e-6)


def test_epsilon_below_analytic_bound_of_unsampled_gaussian():
  # Without sampling (q=1), T Gaussian rounds are one Gaussian with z/sqrt(T);
  # RDP gives eps <= T/(2 z^2) + sqrt(2 T/z^2 log(1/delta)) (Mironov 2017, Prop. 3).
  z, t, delta = 2.0, 10, 1e-5
  got = statement.epsilon_spent(
      noise_multiplier=z, clients_per_round=10, population_size=10, rounds=t,
      delta=delta)
  bound = t / (2 * z**2) + math.sqrt(2 * t / z**2 * math.log(1 / delta))
  assert 0 < got <= bound


def test_epsilon_grows_with_rounds_and_shrinks_with_noise():
  kw = dict(clients_per_round=5, population_size=100)
  eps = [statement.epsilon_spent(noise_multiplier=1.0, rounds=t, **kw) for t in (1, 10, 100)]
  assert eps[0] < eps[1] < eps[2]
  assert statement.epsilon_spent(noise_multiplier=2.0, rounds=10, **kw) < eps[1]


def test_zero_rounds_spend_nothing_and_zero_noise_is_unbounded():
  kw = dict(clients_per_round=10, population_size=100)
  assert statement.epsilon_spent(noise_multiplier=1.0, rounds=0, **kw) == 0.0
  assert math.isinf(statement.epsilon_spent(noise_multiplier=0.0, rounds=5, **kw))


@pytest.mark.slow
@pytest.mark.parametrize('target, accountant, sampling', [
    (0.5, 'rdp', 'poisson'), (2.0, 'rdp', 'poisson'), (8.0, 'rdp', 'poisson'),
    (2.0, 'pld', 'poisson'), (4.0, 'rdp', 'fixed_size')])
def test_calibration_round_trip_hits_target(target, accountant, sampling):
  kw = dict(clients_per_round=20, population_size=400, rounds=30, delta=1e-5,
            accountant=accountant, sampling=sampling)
  z = statement.calibrate_noise_multiplier(target_epsilon=target, **kw)
  eps = statement.epsilon_spent(noise_multiplier=z, **kw)
  assert eps <= target
  assert eps == pytest.approx(target, rel=1e-2)


def test_sampling_probability_refuses_cohort_larger_than_population():
  with pytest.raises(ValueError, match=r'clients_per_round must be in \(0, population'):
    statement.sampling_probability(clients_per_round=200, population_size=100)


def test_privacy_statement_names_what_is_protected():
  s = statement.privacy_statement(
      mechanism='gaussian_fixed', noise_multiplier=1.0, clients_per_round=10,
      population_size=100, rounds=5, delta=1e-5)
  assert s['unit_of_privacy'].startswith("one user's whole data")
  assert s['sampling'] == 'poisson' and s['accountant'] == 'rdp'
  assert s['sampling_probability'] == pytest.approx(0.1)
  assert s['epsilon'] == pytest.approx(statement.epsilon_spent(
      noise_multiplier=1.0, clients_per_round=10, population_size=100, rounds=5,
      delta=1e-5))


def test_non_private_statement_has_no_epsilon():
  s = statement.privacy_statement(
      mechanism='none', noise_multiplier=0.0, clients_per_round=10,
      population_size=100, rounds=5)
  assert s['epsilon'] is None and s['differentially_private'] is False


def test_privacy_module_does_not_import_tensorflow():
  import subprocess
  import sys
  code = ('import sys, fl_analytics.privacy.statement, fl_analytics.core.rundir, fl_analytics.data.clients;'
          'sys.exit(1 if "tensorflow" in sys.modules else 0)')
  assert subprocess.run([sys.executable, '-c', code]).returncode == 0


def test_tree_epsilon_composes_one_single_epoch_tree_per_pass():
  # 776 users, 50 per round: passes of 15 rounds; 40 rounds = 2 full passes + 10.
  accountant = dp_accounting.rdp.RdpAccountant(
      neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
  accountant.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(3.0, 15), 2)
  accountant.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(3.0, 10))
  got = statement.epsilon_spent(noise_multiplier=3.0, clients_per_round=50,
                              population_size=776, rounds=40, sampling='shuffle')
  assert got == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-12)
  privacy_statement = statement.privacy_statement(
      mechanism='tree', noise_multiplier=3.0, clients_per_round=50,
      population_size=776, rounds=40, sampling='shuffle')
  assert privacy_statement['rounds_per_pass'] == 15 and privacy_statement['max_participations'] == 3
  assert 'No sampling amplification' in privacy_statement['notes']


def test_tree_calibration_round_trip():
  kw = dict(clients_per_round=50, population_size=776, rounds=40, sampling='shuffle')
  z = statement.calibrate_noise_multiplier(target_epsilon=4.0, **kw)
  assert statement.epsilon_spent(noise_multiplier=z, **kw) == pytest.approx(4.0, rel=1e-2)


@pytest.mark.parametrize('kw, message', [
    (dict(mechanism='tree', sampling='poisson'), 'accounted for sampling=shuffle'),
    (dict(mechanism='gaussian_fixed', sampling='shuffle'),
     'sampling=shuffle is accounted only for dp.mechanism=tree'),
    (dict(mechanism='tree', sampling='shuffle', accountant='pld'),
     'pld accountant cannot analyse tree aggregation'),
])
def test_tree_combinations_the_accountant_cannot_analyse_are_refused(kw, message):
  kw.setdefault('accountant', 'rdp')
  with pytest.raises(ValueError, match=message):
    statement.check_accounting(**kw)


def test_secure_sum_factor_is_half_a_quantization_step_per_coordinate():
  # d coordinates each off by at most C / (2**32 - 1): the L2 norm grows by sqrt(d) of it.
  assert statement.secure_sum_sensitivity_factor(4) == 1.0 + 2.0 / (2**32 - 1)
  with pytest.raises(ValueError, match='num_parameters must be >= 1. Found 0'):
    statement.secure_sum_sensitivity_factor(0)
  with pytest.raises(ValueError, match='sensitivity_factor must be >= 1. Found 0.5'):
    statement.privacy_statement(mechanism='gaussian_fixed', noise_multiplier=1.0,
                              clients_per_round=10, population_size=100, rounds=1,
                              sensitivity_factor=0.5)


def test_compression_factor_bounds_its_formula():
  # 1 + sqrt(2 * largest quantized tensor) / (2**bits - 1); small tensors stay exact.
  assert statement.compression_sensitivity_factor(
      bits=8, tensor_sizes=[512, 32, 32, 1], threshold=100) == 1 + math.sqrt(1024) / 255
  assert statement.compression_sensitivity_factor(
      bits=8, tensor_sizes=[50, 1], threshold=100) == 1.0
  with pytest.raises(ValueError, match='bits must be in \\[1, 16\\]. Found 0'):
    statement.compression_sensitivity_factor(bits=0, tensor_sizes=[5], threshold=0)


def test_general_sampling_without_replacement_bound_matches_dp_accounting_for_gaussian():
  orders = list(range(2, 97))  # dp_accounting's side costs ~7 s per case up to 256
  for z, q in ((1.3, 0.05), (0.8, 0.2), (3.0, 0.01)):
    gaussian = np.array([a / (2 * z * z) for a in orders])
    ours = accounting.sample_without_replacement_rdp(orders, gaussian, q)
    theirs = rdp_privacy_accountant._compute_rdp_sample_wor_gaussian(q, z, orders)
    # Theorem 9 at order 2 is what dp_accounting computes; above, dp_accounting may
    # only be tighter (its Theorem 27).
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    assert np.all(ours >= theirs * (1 - 1e-12))
    assert np.all(ours <= gaussian + 1e-12)


def test_skellam_rdp_tends_to_the_gaussian_rdp_for_large_noise():
  orders = [2, 8, 32]
  rdp = distributed.skellam_rdp(orders, l1_sensitivity=100, l2_sensitivity=10,
                            variance=1e8)
  gaussian = np.array(orders) * 100 / (2 * 1e8)
  assert np.all(rdp > gaussian)
  assert rdp == pytest.approx(gaussian, rel=1e-3)
  with pytest.raises(ValueError, match='integers >= 2'):
    distributed.skellam_rdp([1.5], l1_sensitivity=1, l2_sensitivity=1, variance=1.0)


def _skellam_params(z, clip=0.2, scale=1e4, clients=50, dim=1024):
  l2 = (clip + math.sqrt(dim) / scale) * scale
  return {'l1_bound': math.ceil(l2 * math.sqrt(dim)), 'l2_bound': l2,
          'local_stddev': z * clip * scale / math.sqrt(clients)}


def test_distributed_epsilon_is_just_above_the_fixed_size_gaussian_epsilon():
  kw = dict(clients_per_round=50, population_size=800, rounds=40)
  gaussian = statement.epsilon_spent(noise_multiplier=1.5, sampling='fixed_size', **kw)
  skellam = statement.distributed_epsilon(params=_skellam_params(1.5), **kw)
  # The same noise relative to the (slightly inflated) clip, plus the discrete term.
  assert gaussian < skellam < 1.1 * gaussian


def test_distributed_calibration_round_trip():
  kw = dict(clients_per_round=50, population_size=800, rounds=40)
  z = statement.calibrate_distributed(target_epsilon=3.0, params_fn=_skellam_params, **kw)
  eps = statement.distributed_epsilon(params=_skellam_params(z), **kw)
  assert eps <= 3.0 and eps == pytest.approx(3.0, rel=1e-3)


@pytest.mark.parametrize('kw', [dict(accountant='rdp', sampling='poisson'),
                                dict(accountant='pld', sampling='fixed_size')])
def test_distributed_is_accounted_for_fixed_size_rdp_only(kw):
  with pytest.raises(ValueError, match=r'dp.mechanism=distributed \(distributed Skellam\) '
                     r'is accounted for sampling=fixed_size with the rdp accountant only'):
    statement.check_accounting(mechanism='distributed', **kw)


def test_calibration_refuses_targets_out_of_reach_naming_the_end_of_the_range():
  common = dict(clients_per_round=50, population_size=776, rounds=40, delta=1e-5)
  with pytest.raises(ValueError, match=r'target_epsilon=1e\+06 is out of reach: noise '
                     r'multiplier 0.01.*protects nothing'):
    statement.calibrate_noise_multiplier(target_epsilon=1e6, **common)
  with pytest.raises(ValueError, match=r'target_epsilon=0.0001 is out of reach: noise '
                     r'multiplier 10000.*No noise reaches it'):
    statement.calibrate_noise_multiplier(target_epsilon=1e-4, **common)


def test_calibration_at_a_million_users_survives_rdp_rounding_below_zero():
  # dp_accounting 0.4.3 alone: 'Renyi divergence cannot be negative. Found -8.4e-13'
  # at this sampling rate, at the large-noise end of the calibration.
  settings = mechanisms.DpSettings(
      mechanism='gaussian_adaptive', noise_multiplier=1.0, clients_per_round=1000,
      population_size=800_000, delta=1e-7, sampling='poisson', accountant='rdp')
  z = statement.calibrate(settings, rounds=40, target_epsilon=1.0)
  spent = statement.epsilon(dataclasses.replace(settings, noise_multiplier=z), 40)
  assert 0.99 < spent <= 1.0 and 0.5 < z < 2


def test_rdp_clearly_below_zero_is_still_refused():
  with pytest.raises(ValueError, match='cannot be negative'):
    accounting.compute_epsilon([2.0, 3.0], [0.1, -1e-6], 1e-5)
  assert accounting.compute_epsilon([2.0, 3.0], [0.1, -1e-12], 1e-5)[0] > 0


# --- tree aggregation with several participations ---------------------------------------


def test_gboard_dp_ftrl_accounting_reproduces_its_published_rho_and_epsilon():
  # Gboard's first DP next-word model (es-ES, 2022): tree aggregation with noise
  # multiplier 7.0, 2,000 rounds, each device at most 6 times and at least 313 rounds
  # apart: rho = 0.81 zCDP, epsilon 8.9 at delta 1e-10 (Xu et al. 2023, "Federated
  # Learning of Gboard Language Models with Differential Privacy", arXiv 2305.18465;
  # Google Research blog, "Advances in private training for production on-device
  # language models", 2024). The sensitivity is the committed value of
  # tools/tree_sensitivity.py (TF Privacy's computation, minutes at this size).
  event = accounting.TreeAggregationZcdpDpEvent(7.0, 2000, 6, 313)
  assert round(event.zcdp(), 2) == 0.81
  accountant = accounting.RdpAccountant(orders=np.linspace(1.1, 64, 630),
                                        neighboring_relation=REPLACE_SPECIAL)
  accountant.compose(event)
  assert round(accountant.get_epsilon(1e-10), 1) == 8.9


def test_committed_tree_sensitivities_are_tf_privacys():
  # Every committed entry small enough to compute here (the Gboard one takes minutes:
  # the test above checks it against its published numbers instead).
  with open(accounting.TREE_SENSITIVITY_FILE) as f:
    values = json.load(f)['values']
  small = {k: v for k, v in values.items() if int(k.split(',')[0]) <= 500}
  assert small and len(small) < len(values)
  for key, value in small.items():
    steps, k, b = (int(x) for x in key.split(','))
    assert accounting.compute_tree_sensitivity_square_sum(steps, k, b) == value, key


@pytest.mark.parametrize('steps', [1, 2, 7, 64, 100, 2000])
def test_one_participation_per_tree_is_dp_accountings_single_epoch_tree(steps):
  # Two implementations of one tree with each user once: TF Privacy's worst case over
  # participation patterns and dp_accounting's SingleEpochTreeAggregationDpEvent.
  orders = np.array([1.5, 2.0, 8.0, 32.0])
  ours = accounting.TreeAggregationZcdpDpEvent(3.0, steps, 1, 0).rdp(orders)
  theirs = dp_accounting.rdp.RdpAccountant(orders, neighboring_relation=REPLACE_SPECIAL)
  theirs.compose(dp_accounting.SingleEpochTreeAggregationDpEvent(3.0, steps))
  np.testing.assert_allclose(ours, theirs._rdp, rtol=1e-12)  # pylint: disable=protected-access


def test_tree_participation_bounds_are_checked():
  with pytest.raises(ValueError, match='max_participations >= 1'):
    accounting.tree_zcdp(1.0, 100, 0, 10)
  # More participations than fit at that separation count as the most that fit.
  assert accounting.tree_zcdp(1.0, 20, 6, 9) == accounting.tree_zcdp(1.0, 20, 2, 9)
