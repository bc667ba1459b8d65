"""Production schedules: (k, b)-participation and availability check-ins, their bounds,
the check of what a run did, and the accounting that reads them."""

import dataclasses
import os

import dp_accounting
import numpy as np
import pytest

from fl_analytics.core import rundir
from fl_analytics.privacy import accounting
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import sampling
from fl_analytics.privacy import statement
from fl_analytics.runs import training
from tests.helpers import tiny_config

SCHEDULES = [name for name, s in sampling.SCHEMES.items() if s.bounds is not None]


def _participations(scheme, rounds, *, n=300, m=12, seed=2, **limits):
  """Each user's rounds under `scheme`."""
  p = sampling.Participation(**limits)
  seen = {}
  for r in range(1, rounds + 1):
    for u in sampling.cohort(sampling=scheme, population_size=n, clients_per_round=m,
                             seed=seed, round_num=r, participation=p):
      seen.setdefault(int(u), []).append(r)
  return seen


def test_min_separation_takes_groups_in_turn_multiples_of_b_apart():
  seen = _participations('min_separation', 40, min_separation=8)
  assert max(len(r) for r in seen.values()) == 5  # ceil(40 / 8)
  for rounds in seen.values():
    assert all(d % 8 == 0 for d in np.diff(rounds))
  # k passes over the b groups, then nobody is left.
  capped = _participations('min_separation', 40, min_separation=8, max_participations=2)
  assert max(len(r) for r in capped.values()) == 2
  assert max(max(r) for r in capped.values()) <= 16


def test_available_draws_within_the_window_and_within_the_caps():
  p = sampling.Participation(max_participations=3, min_separation=6, rounds_per_day=12,
                             window_hours=6)
  check_ins = sampling.CheckIns(2000, 60, 5, p)
  check = sampling.ParticipationCheck(2000, (3, 6))
  sizes = []
  for r in range(1, 49):  # four days
    cohort = sampling.cohort(sampling='available', population_size=2000,
                             clients_per_round=60, seed=5, round_num=r, participation=p)
    assert np.all(check_ins.available(r)[cohort]) and len(cohort) <= 60
    check.record(r, cohort)  # raises if a cap is broken
    sizes.append(len(cohort))
  fields = check.fields()
  assert fields['max_participations_seen'] == 3 and fields['min_separation_seen'] >= 6
  # The daily pattern: full cohorts at night, empty ones at midday.
  by_hour = np.array(sizes).reshape(4, 12).mean(axis=0)
  assert by_hour.max() == 60 and by_hour.min() == 0


def test_available_cohort_is_the_same_asked_out_of_order():
  p = sampling.Participation(max_participations=2, min_separation=3, window_hours=24)
  draw = lambda r: sampling.cohort(sampling='available', population_size=200,
                                   clients_per_round=30, seed=9, round_num=r,
                                   participation=p)
  in_order = [draw(r).copy() for r in range(1, 15)]
  fresh = sampling.CheckIns(200, 30, 9, p)
  for r in (14, 3, 9, 1):  # backwards: it starts again from round 1
    np.testing.assert_array_equal(fresh.cohort(r), in_order[r - 1])


@pytest.mark.parametrize('users,message', [
    ([[1, 2], [3], [1]], 'user 1 takes part 2 rounds after its previous participation; '
                         'the accounting assumed at least min_separation=3'),
    ([[1], [], [], [1], [], [], [1]], 'user 1 takes part for the 3th time; the '
                                      'accounting assumed at most max_participations=2'),
])
def test_participation_check_names_the_user_and_the_bound_it_breaks(users, message):
  check = sampling.ParticipationCheck(10, (2, 3))
  with pytest.raises(sampling.ParticipationError, match=message):
    for r, cohort in enumerate(users, 1):
      check.record(r, cohort)


@pytest.mark.parametrize('scheme', ['poisson', 'fixed_size'])
def test_correctly_sampled_cohorts_are_never_taken_for_broken_ones(scheme):
  check = sampling.ParticipationCheck(2000, None, rate=0.05)
  for r in range(1, 301):
    check.record(r, sampling.cohort(sampling=scheme, population_size=2000,
                                    clients_per_round=100, seed=4, round_num=r))
  assert check.fields()['max_participations_probability'] > 1e-3


def test_the_same_cohort_every_round_is_not_the_stated_sampling():
  """The audit's frozen-cohort fault (issue 29): 50 of 900 users, q = 1/18, the same
  users every round. Ten rounds in a row happen to one of 900 users with probability
  900 / 18**10 < 1e-9."""
  check = sampling.ParticipationCheck(900, None, rate=50 / 900)
  with pytest.raises(sampling.ParticipationError,
                     match=r'Round 10: user 0 takes part for the 10th time in 10 '
                           r'rounds; sampled at rate 0.05556'):
    for r in range(1, 41):
      check.record(r, np.arange(50))


def test_participation_check_without_bounds_records_what_it_saw():
  check = sampling.ParticipationCheck(10, None)
  for r, cohort in enumerate([[1, 2], [2], [], [1]], 1):
    check.record(r, cohort)
  assert check.fields() == {'rounds': 4, 'max_participations_seen': 2,
                            'min_separation_seen': 1}


@pytest.mark.parametrize('limits,rounds,population,match', [
    ({'min_separation': 10}, 40, 100, 'must be at most population // '
                                      'participation.min_separation = 100 // 10 = 10'),
    ({'min_separation': 2, 'max_participations': 3}, 7, 1000,
     'num_rounds=7 is more than participation.max_participations \\* '
     'participation.min_separation = 3 \\* 2 = 6'),
])
def test_a_min_separation_schedule_that_cannot_run_is_refused(limits, rounds, population,
                                                              match):
  with pytest.raises(ValueError, match=match):
    sampling.check_schedule(sampling='min_separation', population_size=population,
                            clients_per_round=12, rounds=rounds,
                            participation=sampling.Participation(**limits))


@pytest.mark.parametrize('limits,match', [
    ({'max_participations': 0}, 'participation.max_participations must be None or an '
                                'integer >= 1. Found 0'),
    ({'min_separation': 0}, 'participation.min_separation must be an integer >= 1'),
    ({'window_hours': 25.0}, r'participation.window_hours must be in \(0, 24\]'),
])
def test_bad_participation_values_are_refused_by_key(limits, match):
  with pytest.raises(ValueError, match=match):
    sampling.Participation(**limits).check()


# --- the accounting that reads the bounds ------------------------------------------------


def test_one_tree_on_a_schedule_reproduces_gboards_published_numbers():
  """Gboard's 2022 DP-FTRL setting (Xu et al. 2023, arXiv 2305.18465): noise
  multiplier 7, 2,000 rounds, at most 6 participations, 313 rounds apart: rho 0.81,
  epsilon 8.9 at delta 1e-10. The tree's sensitivity is the same whether 313 counts the
  rounds between two participations or their difference."""
  for b in (313, 314):
    settings = mechanisms.settings(
        mechanism='tree', noise_multiplier=7.0, clients_per_round=6500,
        population_size=10**7, sampling='min_separation', delta=1e-10,
        participation=sampling.Participation(max_participations=6, min_separation=b))
    written = statement.statement(settings, 2000)
    assert written['zcdp_rho'] == pytest.approx(0.81, abs=0.005)
    assert written['epsilon'] == pytest.approx(8.9, abs=0.05)
    assert (written['max_participations'], written['min_separation']) == (6, b)


def test_one_tree_accounts_the_planned_run_at_every_round():
  settings = mechanisms.settings(
      mechanism='tree', noise_multiplier=3.0, clients_per_round=10, population_size=500,
      sampling='available', participation=sampling.Participation(
          max_participations=3, min_separation=50), planned_rounds=200)
  whole = statement.epsilon(settings, 200)
  assert statement.epsilon(settings, 5) == whole
  # One tree over 200 rounds, 3 participations, 49 rounds between two (TF Privacy).
  acc = accounting.RdpAccountant().compose(
      accounting.TreeAggregationZcdpDpEvent(3.0, 200, 3, 49))
  assert whole == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)


def test_gaussian_on_a_schedule_is_k_gaussian_mechanisms():
  settings = mechanisms.settings(
      mechanism='gaussian_fixed', noise_multiplier=4.0, clients_per_round=10,
      population_size=500, sampling='min_separation',
      participation=sampling.Participation(min_separation=10))
  acc = dp_accounting.rdp.RdpAccountant()
  acc.compose(dp_accounting.GaussianDpEvent(4.0), 3)  # 25 rounds: at most 3 times
  assert statement.epsilon(settings, 25) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)


# --- in a run -----------------------------------------------------------------------------

_RUN = {'sampling': 'available', 'dp.mechanism': 'tree', 'num_rounds': 4, 'eval_every': 4,
        'participation.max_participations': 2, 'participation.min_separation': 2,
        'participation.window_hours': 24.0, 'dp.delta': 1e-3}


@pytest.mark.slow
def test_a_run_records_and_checks_its_schedule_and_resumes_the_check(tmp_path):
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(tiny_config(**{**_RUN, 'num_rounds': 2}), workdir)
  training.train_and_evaluate(tiny_config(**_RUN), workdir)  # resumes after round 2
  written = rundir.read_json(os.path.join(workdir, rundir.PRIVACY_FILE))
  assert written['sampling'] == 'available' and written['accounted_rounds'] == 4
  assert (written['max_participations'], written['min_separation']) == (2, 2)
  checked = written['participation_checked']
  assert checked['rounds'] == 4 and checked['held'] is True
  assert checked['max_participations_seen'] == 2 and checked['min_separation_seen'] >= 2


@pytest.mark.slow
@pytest.mark.parametrize('scheme, overrides, match, completed', [
    ('available', _RUN, 'Round 2: user 0 takes part 1 rounds after', 1),
    # Poisson at q = 20 / 120: the same 20 users in round after round is out of reach of
    # the stated sampling (below 1e-9 for any of the 120) from round 15 on.
    ('poisson', {'dp.mechanism': 'gaussian_fixed', 'num_rounds': 16, 'eval_every': 16},
     'Round 15: user 0 takes part for the 15th time in 15 rounds; sampled at rate '
     '0.1667', 14)])
def test_cohorts_that_break_the_stated_scheme_stop_the_run_before_the_round(
    tmp_path, monkeypatch, scheme, overrides, match, completed):
  broken = lambda **kw: np.arange(20)  # the same users every round
  monkeypatch.setitem(sampling.SCHEMES, scheme,
                      dataclasses.replace(sampling.SCHEMES[scheme], draw=broken))
  workdir = str(tmp_path / 'run')
  with pytest.raises(sampling.ParticipationError, match=match):
    training.train_and_evaluate(tiny_config(**overrides), workdir)
  assert len(rundir.read_csv(os.path.join(workdir, rundir.METRICS_FILE))) == completed


@pytest.mark.slow
@pytest.mark.parametrize('mechanism', ['blt', 'banded'])
def test_a_matrix_mechanism_run_records_its_strategy_and_cannot_outgrow_it(tmp_path,
                                                                          mechanism):
  workdir = str(tmp_path / 'run')
  config = {**_RUN, 'dp.mechanism': mechanism, 'dp.target_epsilon': 4.0}
  training.train_and_evaluate(tiny_config(**config), workdir)
  written = rundir.read_json(os.path.join(workdir, rundir.PRIVACY_FILE))
  assert written['epsilon'] == pytest.approx(4.0, rel=1e-3)
  assert written['accounted_rounds'] == 4 and written['participation_checked']['held']
  recorded = rundir.read_json(os.path.join(workdir, rundir.CONFIG_FILE))['resolved']
  assert recorded[mechanism]['n'] == 4 and recorded[mechanism]['kind'] == mechanism
  assert written['strategy_sensitivity'] == pytest.approx(
      recorded[mechanism]['sensitivity'])
  # Its noise was optimized for 4 rounds: a 6-round continuation is another strategy.
  with pytest.raises(training.ConfigMismatchError, match=f'resolved.{mechanism}'):
    training.train_and_evaluate(tiny_config(**{**config, 'num_rounds': 6}), workdir)
