"""experiments/privacy.py: a privacy statement without training."""

import json
import os
import subprocess
import sys

import pytest

from fl_analytics.privacy import statement

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, os.path.join(REPO, 'experiments', 'privacy.py'),
       '--num_clients=776', '--clients_per_round=50', '--rounds=40', '--delta=1e-5']


def _run(*flags):
  return subprocess.run(CLI + list(flags), capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize('accountant, sampling, mechanism', [
    ('rdp', 'poisson', 'gaussian'), ('pld', 'poisson', 'gaussian'),
    ('rdp', 'fixed_size', 'gaussian'), ('rdp', 'shuffle', 'tree')])
def test_json_statement_is_the_library_statement(accountant, sampling, mechanism):
  out = _run('--noise_multiplier=1.5', f'--accountant={accountant}',
             f'--sampling={sampling}', f'--mechanism={mechanism}', '--json')
  assert out.returncode == 0, out.stderr
  got = json.loads(out.stdout)
  assert {'epsilon', 'delta', 'noise_multiplier', 'accountant', 'sampling'} <= set(got)
  assert got['epsilon'] == pytest.approx(statement.epsilon_spent(
      noise_multiplier=1.5, clients_per_round=50, population_size=776, rounds=40,
      delta=1e-5, accountant=accountant, sampling=sampling), rel=1e-12)
  assert (got['accountant'], got['sampling']) == (accountant, sampling)


@pytest.mark.slow
def test_target_epsilon_gives_the_calibrated_noise_multiplier():
  out = _run('--target_epsilon=2', '--json')
  got = json.loads(out.stdout)
  assert got['calibrated'] is True
  assert got['noise_multiplier'] == pytest.approx(statement.calibrate_noise_multiplier(
      target_epsilon=2.0, clients_per_round=50, population_size=776, rounds=40))
  assert got['epsilon'] <= 2.0


def test_text_statement_says_what_is_protected_and_how():
  out = _run('--noise_multiplier=1')
  assert out.returncode == 0
  assert "Protected: one user's whole data" in out.stdout
  assert 'Neighbouring datasets: add or remove one user.' in out.stdout
  assert 'Guarantee: (3.67, 1e-05)-DP by the RDP accountant.' in out.stdout


def test_unanalysable_combination_is_refused_with_a_message():
  out = _run('--noise_multiplier=1', '--accountant=pld', '--sampling=fixed_size')
  assert out.returncode == 2
  assert 'pld accountant cannot analyse fixed_size sampling' in out.stderr
  assert 'Traceback' not in out.stderr and out.stdout == ''


@pytest.mark.slow
def test_distributed_statement_and_calibration_are_those_of_training():
  from fl_analytics.privacy import aggregators  # pylint: disable=g-import-not-at-top

  def params(z):
    return aggregators.distributed_parameters(noise_multiplier=z, clip=0.2,
                                              clients_per_round=50, bits=16, dim=577)

  out = _run('--noise_multiplier=1', '--sampling=fixed_size', '--mechanism=distributed',
             '--dim=577', '--json')
  assert out.returncode == 0, out.stderr
  assert json.loads(out.stdout)['epsilon'] == pytest.approx(statement.distributed_epsilon(
      params=params(1.0), clients_per_round=50, population_size=776, rounds=40,
      delta=1e-5))
  out = _run('--target_epsilon=4', '--sampling=fixed_size', '--mechanism=distributed',
             '--dim=577')
  assert out.returncode == 0, out.stderr
  assert 'Skellam noise added by the clients' in out.stdout
  assert 'Calibrated noise multiplier for epsilon 4:' in out.stdout
  missing = _run('--noise_multiplier=1', '--sampling=fixed_size', '--mechanism=distributed')
  assert missing.returncode == 2 and '--mechanism=distributed needs --dim' in missing.stderr


_GBOARD = ('--sampling=min_separation', '--rounds=2000', '--max_participations=6',
           '--min_separation=313', '--clients_per_round=6500', '--num_clients=10000000',
           '--delta=1e-10')


def test_gboards_production_setting_costs_its_published_epsilon():
  out = _run('--mechanism=tree', '--noise_multiplier=7', *_GBOARD)
  assert out.returncode == 0, out.stderr
  assert ('Guarantee: (8.899, 1e-10)-DP by the RDP accountant (from 0.8061-zCDP).'
          in out.stdout)


@pytest.mark.slow
@pytest.mark.parametrize('mechanism', ['blt', 'banded'])
def test_a_matrix_mechanism_states_its_strategy_and_calibrates(mechanism):
  out = _run(f'--mechanism={mechanism}', '--target_epsilon=5.37', '--json', *_GBOARD)
  assert out.returncode == 0, out.stderr
  got = json.loads(out.stdout)
  assert got['epsilon'] == pytest.approx(5.37, rel=1e-3)
  assert (got['max_participations'], got['min_separation']) == (6, 313)
  assert got['strategy_sensitivity'] > 1
  text = _run(f'--mechanism={mechanism}', '--noise_multiplier=2', *_GBOARD).stdout
  assert 'Strategy: optimized for 2000 rounds, 6 participations 313 apart' in text


def test_a_schedule_bound_out_of_range_is_refused_by_flag():
  out = _run('--mechanism=tree', '--sampling=min_separation', '--noise_multiplier=1',
             '--min_separation=0')
  assert out.returncode == 2
  assert '--min_separation must be an integer >= 1. Found 0.' in out.stderr
