"""Consent, dropout and heterogeneous devices; and the accounting facts dropout relies on."""

import ml_collections
import numpy as np
import pytest

from fl_analytics.data import devices
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import statement


def _clients(**kw):
  c = ml_collections.ConfigDict(dict(opt_out=0.0, dropout=0.0, max_local_steps='none'))
  c.update(kw)
  return c


@pytest.mark.parametrize('spec, expected', [
    ('none', ('none', ())), ('uniform:1:20', ('uniform', (1.0, 20.0))),
    ('lognormal:8:1.0', ('lognormal', (8.0, 1.0))), (' uniform:3:3 ', ('uniform', (3.0, 3.0))),
])
def test_step_distributions_parse(spec, expected):
  assert devices.parse_max_local_steps(spec) == expected


@pytest.mark.parametrize('kw, message', [
    (dict(max_local_steps='uniform:5'), r'must be one of none, uniform:LOW:HIGH, '
     r"lognormal:MEDIAN:SIGMA \(e.g. uniform:1:20 or lognormal:8:1.0\). Found 'uniform:5'"),
    (dict(max_local_steps='uniform:0:3'), r'LOW and HIGH must be integers with 1 <= LOW'),
    (dict(max_local_steps='lognormal:0.5:1'), r'MEDIAN must be >= 1 and SIGMA >= 0'),
    (dict(max_local_steps='poisson:3'), r"Found 'poisson:3'"),
    (dict(dropout=1.0), r'clients.dropout must be a number in \[0, 1\). Found 1.0'),
    (dict(opt_out=-0.1), r'clients.opt_out must be a number in \[0, 1\). Found -0.1'),
])
def test_bad_client_settings_name_the_value(kw, message):
  with pytest.raises(ValueError, match=message):
    devices.check_clients_config(_clients(**kw))


def test_dropout_is_refused_where_it_would_remove_noise():
  with pytest.raises(ValueError, match=r'not supported with dp.mechanism=distributed: each '
                     r'client adds a share of the noise'):
    mechanisms.check_dropout('distributed', 0.1)
  mechanisms.check_dropout('tree', 0.1)
  assert not mechanisms.get('distributed').dropout and mechanisms.get('tree').dropout


def test_dropout_is_seeded_per_round_and_drops_its_share():
  cohort = np.arange(0, 2000, 2)
  a = devices.reporting(cohort, 0.3, seed=1, round_num=4)
  assert np.array_equal(a, devices.reporting(cohort, 0.3, seed=1, round_num=4))
  assert not np.array_equal(a, devices.reporting(cohort, 0.3, seed=1, round_num=5))
  assert set(a.tolist()) <= set(cohort.tolist())
  assert abs(len(a) / len(cohort) - 0.7) < 0.05
  assert devices.reporting(cohort, 0.0, seed=1, round_num=4) is cohort


def test_step_caps_follow_their_distribution_per_client_and_round():
  cohort = np.arange(3000)
  caps = devices.max_local_steps(cohort, 'uniform:2:5', seed=0, round_num=1)
  assert caps.min() == 2 and caps.max() == 5
  assert np.array_equal(caps, devices.max_local_steps(cohort, 'uniform:2:5', seed=0,
                                                      round_num=1))
  # A client's cap depends on the client, not on who else is in the cohort.
  assert devices.max_local_steps(cohort[7:8], 'uniform:2:5', seed=0,
                                 round_num=1)[0] == caps[7]
  logn = devices.max_local_steps(cohort, 'lognormal:8:1.0', seed=0, round_num=2)
  assert logn.min() >= 1 and 7 <= np.median(logn) <= 9
  assert devices.max_local_steps(cohort, 'none', seed=0, round_num=1) is None


def test_opt_out_removes_the_fraction_once_per_population():
  out = devices.opted_out(1000, 0.15, seed=3)
  assert len(out) == 150 and len(set(out.tolist())) == 150
  assert np.array_equal(out, devices.opted_out(1000, 0.15, seed=3))
  assert len(devices.opted_out(1000, 0.0, seed=3)) == 0


@pytest.mark.slow
@pytest.mark.parametrize('sampling', ['poisson', 'fixed_size'])
def test_fewer_reporting_clients_never_cost_more_epsilon(sampling):
  # What statement.dropout_note relies on: at the same noise, a smaller expected (Poisson)
  # or exact (without replacement) cohort spends no more privacy.
  eps = [statement.epsilon_spent(noise_multiplier=1.0, clients_per_round=m,
                               population_size=700, rounds=40, delta=1e-5,
                               sampling=sampling) for m in (5, 10, 20, 35, 50)]
  assert all(a < b for a, b in zip(eps, eps[1:])), eps


def test_dropout_note_explains_each_sampling():
  for sampling in ('poisson', 'fixed_size', 'shuffle'):
    assert 'independently of the data' in statement.dropout_note(0.2, sampling)
  with pytest.raises(ValueError, match="No dropout analysis for sampling='other'"):
    statement.dropout_note(0.2, 'other')


def test_protocol_dropout_stages_split_the_clients_that_do_not_report():
  cohort = np.arange(400)
  for round_num in (1, 2):
    reporting = devices.reporting(cohort, 0.3, seed=5, round_num=round_num)
    before, after_shares, late = devices.dropout_stages(cohort, 0.3, 0.2, seed=5,
                                                        round_num=round_num)
    assert before + after_shares == len(cohort) - len(reporting)
    assert 0.3 < before / (before + after_shares) < 0.7  # half each, by the same draw
    assert late.max() < len(reporting) and 0.1 < len(late) / len(reporting) < 0.3
  assert devices.dropout_stages(cohort, 0.0, 0.0, seed=5, round_num=1)[:2] == (0, 0)
