"""The white-box mechanism audit (fl_analytics/privacy/mechanism_audit.py): its statistics
against dp_accounting, every registered mechanism passing its own audit, every
sabotaged aggregator and sampler caught in every seed, and the committed
`make audit-mechanisms` results meeting the tightness targets."""

import dataclasses
import json
import os

import dp_accounting
import numpy as np
import pytest

from fl_analytics.privacy import audit
from fl_analytics.privacy import mechanism_audit as ma
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import sabotage
from fl_analytics.privacy import sampling
from tests.helpers import REPO

RESULTS = os.path.join(REPO, 'results', 'audit', 'mechanisms', 'mechanisms.json')
SETTINGS = mechanisms.settings(mechanism='gaussian_fixed', noise_multiplier=1.0, clip=1.0,
                               delta=1e-5)
SMALL = dict(dim=200, trials=200, users=10)
# The check each fault must fail (others may fail too).
EXPECTED_FAILURE = {
    'noise 10x smaller': 'noise scale',
    'no clipping': 'clip',
    'noise in the first round only': 'noise scale',
    'the same noise every round': 'noise correlation',
    'clip applied to the sum': 'clip',
}


@pytest.mark.parametrize('rounds', [1, 4])
@pytest.mark.parametrize('z', [0.5, 1.0, 2.0, 4.0])
def test_gdp_epsilon_matches_dp_accountings_pld_of_the_gaussian_mechanism(z, rounds):
  accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
  accountant.compose(dp_accounting.GaussianDpEvent(z), rounds)
  pld = accountant.get_epsilon(1e-5)
  exact = audit.gdp_epsilon(rounds**0.5 / z, 1e-5)
  assert exact <= pld <= exact * 1.01 + 1e-3, (exact, pld)


def test_every_fault_has_its_expected_failure():
  assert set(EXPECTED_FAILURE) == set(sabotage.AGGREGATOR_FAULTS)


@pytest.fixture(scope='module')
def worker():
  """One TFF worker for the module's audits (each would start its own)."""
  from fl_analytics.core import runtime  # pylint: disable=g-import-not-at-top

  with runtime.local_cpp_context():
    yield


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('fault', sorted(sabotage.AGGREGATOR_FAULTS))
def test_a_sabotaged_aggregator_is_flagged_in_every_seed(fault, seed, worker):
  del worker
  report = ma.audit_mechanism(SETTINGS, rounds=2, seed=seed,
                              fault=sabotage.AGGREGATOR_FAULTS[fault], **SMALL)
  assert EXPECTED_FAILURE[fault] in report.failed, (fault, seed, report.fields())
  assert report.verdict().startswith('fails: ')


def test_a_correct_aggregator_passes_and_an_understated_claim_is_flagged(worker):
  """Any factory with the caller's claim (here TFF's own Gaussian factory). The same
  trials against half the claim: the audit has the power to refuse it."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  dim, users = 1000, 20
  pld = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
  pld.compose(dp_accounting.GaussianDpEvent(1.0))
  claim = ma.Claim(epsilon=pld.get_epsilon(1e-5), delta=1e-5, clip=1.0,
                   denominator=dim + users, covariance=np.eye(1))
  del worker
  trials = ma.run_trials(
      lambda: tff.aggregators.DifferentiallyPrivateFactory.gaussian_fixed(
          noise_multiplier=1.0, clients_per_round=float(dim + users), clip=1.0),
      dim=dim, rounds=1, trials=2000, users=users, clip=1.0, denominator=dim + users,
      seed=3)
  report = ma.analyse(trials, claim, alpha=0.05, seed=3)
  assert report.ok, report.fields()
  assert abs(report.epsilon.estimate / claim.noise_epsilon - 1) < 0.25, report.fields()
  understated = ma.analyse(trials, dataclasses.replace(claim, epsilon=claim.epsilon / 2),
                           alpha=0.05, seed=3)
  assert understated.failed == ('epsilon',), understated.fields()


@pytest.mark.slow
@pytest.mark.parametrize('name', mechanisms.names(private=True))
def test_every_registered_mechanism_passes_its_own_audit(name, worker):
  del worker
  m = mechanisms.get(name)
  rounds = min(2, m.audit_rounds or 2)
  report = ma.audit_mechanism(dataclasses.replace(SETTINGS, mechanism=name),
                              rounds=rounds, noise_seed=11, dim=300, trials=300, users=10)
  assert report.ok, report.fields()
  assert report.claim.epsilon > 0 and report.trials == 300
  if m.noise_covariance is not None:
    assert {'noise scale', 'clip', 'epsilon'} <= {c.name for c in report.checks}


def _scheme(name: str) -> mechanisms.DpSettings:
  """Bounds a frozen cohort breaks: min_separation 10 groups, available at most 5
  participations (shuffle: one per pass of 40 rounds)."""
  return mechanisms.settings(
      mechanism='gaussian_fixed', sampling=name, population_size=2000,
      clients_per_round=50.0, participation=sampling.Participation(
          min_separation=10 if name == 'min_separation' else 1,
          max_participations=5 if name == 'available' else None))


def _same_cohort(*, population_size, clients_per_round, seed, round_num,
                 participation=None):
  del population_size, seed, round_num, participation
  return np.arange(int(clients_per_round))


@pytest.mark.parametrize('scheme', sorted(sampling.SCHEMES))
def test_every_sampling_scheme_passes_and_a_frozen_cohort_is_flagged(scheme):
  assert ma.sampling_check(_scheme(scheme), rounds=100).ok
  frozen = ma.sampling_check(_scheme(scheme), rounds=100, draw=_same_cohort)
  assert not frozen.ok, frozen.detail


def test_a_sampler_at_ten_times_the_accounted_rate_is_flagged_in_every_seed():
  for seed in range(3):
    check = ma.sampling_check(_scheme('poisson'), rounds=100, seed=seed,
                              draw=sabotage.tenfold_sampler)
    assert not check.ok and check.measured / check.claimed > 9, check.detail


def test_refusals_are_one_line_and_name_the_value():
  with pytest.raises(ValueError, match='adds no noise'):
    ma.audit_settings(dataclasses.replace(SETTINGS, mechanism='none'), rounds=1,
                      cohort=10)
  with pytest.raises(ValueError, match='at most 1 round'):
    ma.audit_settings(dataclasses.replace(SETTINGS, mechanism='gaussian_adaptive'),
                      rounds=2, cohort=10)
  with pytest.raises(ValueError, match='trials >= dim'):
    ma.audit_factory(lambda: None, ma.Claim(1.0, 1e-5, 1.0, 1.0), trials=10, dim=100)


def _committed():
  with open(RESULTS) as f:
    return json.load(f)


def test_the_committed_audit_covers_every_mechanism_fault_and_scheme():
  results = _committed()
  audited = {r['label'].split(' + ')[0] for r in results['mechanisms']}
  assert audited == set(mechanisms.names(private=True))
  assert {'gaussian_fixed + secure sum', 'gaussian_fixed + 8-bit compression'} <= {
      r['label'] for r in results['mechanisms']}
  assert all(r['trials'] >= 10_000 and r['verdict'] == 'consistent with claim'
             for r in results['mechanisms']), results['mechanisms']
  faults = {r['label']: r for r in results['faults']}
  assert set(faults) == set(sabotage.AGGREGATOR_FAULTS)
  for name, r in faults.items():
    assert not r['checks'][EXPECTED_FAILURE[name]]['ok'], name
  assert set(results['sampling']) == set(sampling.SCHEMES)
  assert all(c['ok'] for c in results['sampling'].values())
  assert not any(c['ok'] for c in results['sampling_faults'].values())


def test_the_committed_audit_of_the_gaussian_mechanisms_is_tight():
  """Issue 29's targets at 2 x 10^5 trials: the estimate within 10% of the noise's exact
  epsilon (the PLD claim), the lower bound at least half the claim."""
  one_round = [r for r in _committed()['mechanisms']
               if r['label'] in ('gaussian_fixed', 'gaussian_adaptive') and r['rounds'] == 1]
  assert len(one_round) == 2
  for r in one_round:
    assert r['trials'] >= 200_000
    assert abs(r['epsilon']['estimate'] / r['noise_epsilon'] - 1) <= 0.1, r
    assert r['epsilon']['lower_bound'] >= r['claimed_epsilon'] / 2, r
    assert r['claimed_epsilon'] >= r['noise_epsilon'] * 0.999, r
