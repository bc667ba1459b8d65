"""The privacy budget of an analytics session (`privacy.ledger`)."""

import os
import subprocess
import sys

import pytest

from fl_analytics.core import rundir
from fl_analytics.privacy import audit
from fl_analytics.privacy import ledger as ledger_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _exact_gaussian_epsilon(noise_multipliers, delta):
  """Epsilon at delta of composed Gaussian mechanisms, in closed form: k Gaussians of
  noise multipliers z_i compose to mu-GDP with mu = (sum z_i^-2)^1/2 (Dong, Roth, Su
  2022), whose epsilon `audit.gdp_epsilon` solves -- independent of dp_accounting."""
  return audit.gdp_epsilon(sum(x**-2 for x in noise_multipliers)**0.5, delta)


@pytest.mark.parametrize('accountant', ['pld', 'rdp'])
def test_composition_of_releases_matches_the_closed_form(accountant):
  zs = (2.0, 3.0, 5.0, 5.0)
  entries = [ledger_lib.Entry('a', 2.0), ledger_lib.Entry('b', 3.0),
             ledger_lib.Entry('c', 5.0, count=2)]
  got = ledger_lib.composed_epsilon(entries, delta=1e-6, accountant=accountant)
  exact = _exact_gaussian_epsilon(zs, 1e-6)
  # Both accountants are upper bounds; PLD is tight to its discretization, RDP looser.
  assert exact <= got <= exact * (1.02 if accountant == 'pld' else 1.3), (got, exact)


def test_charges_compose_refuse_past_the_budget_and_survive_a_restart(tmp_path):
  ledger = ledger_lib.Ledger(str(tmp_path), epsilon=1.0, delta=1e-6)
  assert ledger.spent == 0
  first = ledger.charge([ledger_lib.Entry('counts', 8.0)])
  second = ledger.charge([ledger_lib.Entry('funnel', 8.0)])
  assert first < second < 2 * first  # composition, not the sum of epsilons
  with pytest.raises(ledger_lib.BudgetExceeded, match=r'over its budget of 1: 0\.\d+ is '
                     r'spent by 2 release\(s\)'):
    ledger.charge([ledger_lib.Entry('retention', 1.0)])
  assert len(ledger.entries) == 2  # the refused release is not recorded
  again = ledger_lib.Ledger(str(tmp_path), epsilon=1.0, delta=1e-6)  # a restart
  assert again.entries == ledger.entries and again.spent == pytest.approx(second)
  assert rundir.read_json(str(tmp_path / ledger_lib.LEDGER_FILE))['spent_epsilon'] == \
      pytest.approx(second)
  with pytest.raises(ValueError, match='holds a budget of epsilon 1, delta 1e-06'):
    ledger_lib.Ledger(str(tmp_path), epsilon=2.0, delta=1e-6)


def test_extra_delta_is_spent_outright_as_dp_accounting_composes_the_rest():
  import dp_accounting  # pylint: disable=g-import-not-at-top
  entries = [ledger_lib.Entry('hh', 3.0, extra_delta=4e-7),
             ledger_lib.Entry('funnel', 6.0, count=2)]
  acc = dp_accounting.pld.PLDAccountant()
  acc.compose(dp_accounting.ComposedDpEvent([dp_accounting.GaussianDpEvent(3.0),
                                             dp_accounting.GaussianDpEvent(6.0),
                                             dp_accounting.GaussianDpEvent(6.0)]))
  assert ledger_lib.composed_epsilon(entries, delta=1e-6, accountant='pld') == \
      pytest.approx(acc.get_epsilon(6e-7), rel=1e-6)
  assert ledger_lib.composed_epsilon(entries, delta=4e-7, accountant='pld') == float('inf')


def test_a_release_calibrated_to_the_whole_budget_fits_it(tmp_path):
  from fl_analytics.analytics import release  # pylint: disable=g-import-not-at-top
  z = release.noise_multiplier_for(1.0, delta=1e-5)
  ledger = ledger_lib.Ledger(str(tmp_path), epsilon=1.0, delta=1e-5)
  assert ledger.charge([ledger_lib.Entry('all of it', z)]) == pytest.approx(1.0, rel=1e-3)
  with pytest.raises(ledger_lib.BudgetExceeded):
    ledger.charge([ledger_lib.Entry('more', 5.0)])


def test_a_damaged_ledger_is_refused_not_replaced(tmp_path):
  path = tmp_path / ledger_lib.LEDGER_FILE
  path.write_text('{"budget": 3}')
  with pytest.raises(rundir.RunDirectoryError, match='not a ledger this session can read'):
    ledger_lib.Ledger(str(tmp_path), epsilon=1.0, delta=1e-6)
  assert path.read_text() == '{"budget": 3}'


@pytest.mark.slow
def test_analytics_sessions_share_the_budget_across_runs(tmp_path):
  workdir = tmp_path / 'session'
  base = [sys.executable, 'experiments/analytics.py', '--config=configs/analytics.py',
          f'--workdir={workdir}', '--config.data.num_users=200', '--config.data.num_days=60',
          '--config.accuracy.enabled=False', '--config.analytics.delta=1e-4',
          '--config.analytics.budget_epsilon=1.3', '--config.analytics.group_size=50']
  run = lambda eps, queries='funnel': subprocess.run(
      base + [f'--queries={queries}', f'--config.analytics.epsilon.{queries}={eps}'],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  first = run(1.0)
  assert first.returncode == 0, first.stderr[-2000:]
  privacy = rundir.read_json(str(workdir / 'privacy.json'))
  assert privacy['ledger']['spent_epsilon'] == pytest.approx(1.0, rel=1e-3)
  assert privacy['epsilon'] == pytest.approx(1.0, rel=1e-3)
  refused = run(1.0, 'retention')  # 1 and 1 compose to more than 1.3
  assert refused.returncode == 2, refused.stderr[-2000:]
  last = refused.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and 'over its budget of 1.3: 1 is spent' in last, last
  saved = rundir.read_json(str(workdir / ledger_lib.LEDGER_FILE))
  assert [r['name'] for r in saved['releases']] == ['funnel epsilon=1']
  assert run(0.3, 'retention').returncode == 0  # what is left pays for a smaller one
  saved = rundir.read_json(str(workdir / ledger_lib.LEDGER_FILE))
  assert [r['name'] for r in saved['releases']] == ['funnel epsilon=1',
                                                    'retention epsilon=0.3']
  rows = rundir.read_csv(str(workdir / 'analytics.csv'))
  assert {r['query'] for r in rows} == {'retention'}  # this run's release
