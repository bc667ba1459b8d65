"""Issue 12: the privacy statement says what it covers; run directories stay consistent.

Each test reproduces one defect found by trying fl-analytics as a careful and as a
hostile user, and fails on the code before its fix.
"""

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from fl_analytics.privacy import aggregators
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import statement
from fl_analytics.core import rundir
from fl_analytics.core import runtime
from fl_analytics.data import events
from fl_analytics.data import generators
from fl_analytics.data import synthetic
from fl_analytics.reporting import report
from fl_analytics.reporting import summary
from fl_analytics import sweeps
from fl_analytics import tasks
from fl_analytics.runs import training
from tests import event_store_test
from tests import training_test
from tests.helpers import REPO

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides):
  """training_test's tiny config, 3 rounds, without personalization (not tested here)."""
  return training_test.tiny_config(**{'num_rounds': 3,
                                      'evaluation.personalization_steps': 0, **overrides})


def _rows(workdir, drop=('round_seconds',)):
  return [{k: v for k, v in r.items() if k not in drop}
          for r in rundir.read_csv(os.path.join(workdir, rundir.METRICS_FILE))]


# A finished non-private run (3 rounds; dropout and one local step per client), copied
# by the tests that damage a run directory.
_FINISHED = dict(**{'dp.mechanism': 'none', 'clients.dropout': 0.3,
                    'clients.max_local_steps': 'uniform:1:1'})


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('finished') / 'run')
  training.train_and_evaluate(_config(**_FINISHED), workdir)
  return workdir


@pytest.fixture
def copy(finished, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(finished, workdir, ignore=shutil.ignore_patterns(rundir.LOCK_FILE))
  return workdir


# DP-FTRL with dropout: 41 users, 4 a round, so a pass is 10 rounds; at dropout 0.6,
# whole cohorts drop out (rounds 6, 8 and 9 with these seeds).
_TREE = {'data.num_users': 41, 'clients_per_round': 4, 'sampling': 'shuffle',
         'dp.mechanism': 'tree', 'clients.dropout': 0.6, 'dp.delta': 1e-3,
         'num_rounds': 12, 'eval_every': 12}


@pytest.fixture(scope='module')
def tree_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('tree') / 'run')
  training.train_and_evaluate(_config(**_TREE), workdir)
  return workdir


# --- 1-4: privacy accounting and the statement -----------------------------------------


@pytest.mark.slow
def test_tree_restarts_follow_rounds_when_a_whole_cohort_drops_out(tree_run):
  rows = _rows(tree_run)
  assert '0' in [r['reported'] for r in rows], 'the test needs an all-dropped round'
  # TF Privacy's PeriodicRoundRestartIndicator counts aggregator calls: its counter,
  # the only int32 scalar of the server state, must equal the rounds run (it was 9:
  # the empty rounds were skipped, and later trees straddled passes).
  leaves = rundir.load_checkpoint(tree_run, 12)
  counters = [int(v) for v in leaves if np.asarray(v).dtype == np.int32
              and np.ndim(v) == 0]
  assert counters == [12]
  # Empty rounds record no training metrics; the privacy statement covers every round.
  for r in rows:
    assert (r['train_loss'] == '') == (r['reported'] == '0')
  assert rundir.read_json(os.path.join(tree_run, rundir.PRIVACY_FILE))['rounds'] == 12


@pytest.mark.slow
def test_statement_says_simulation_only_and_what_the_guarantee_does_not_cover(tree_run):
  written = rundir.read_json(os.path.join(tree_run, rundir.PRIVACY_FILE))
  # The noise is drawn from the recorded seed: not private against whoever reads it.
  assert written['differentially_private'] is False
  assert 'can be regenerated' in written['differentially_private_note']
  assert written['simulation_only'] is True
  caveats = ' '.join(written['simulation_caveats'])
  assert 'recorded in config.json' in caveats and 'dp.reproducible_noise=True' in caveats
  # The summary train.py prints carries the same caveats.
  printed = report.run_summary(tree_run)
  assert 'Simulation only, not a deployment guarantee (differentially_private: false)' in printed
  for caveat in written['simulation_caveats']:
    assert caveat in printed
  outputs = ' '.join(item['output'] for item in written['not_covered'])
  for name in ('cohort_size', 'reported', 'train_batches', 'train_loss',
               'train_accuracy', 'eval_*', 'evaluation.json', 'eval_users.csv'):
    assert name in outputs, name
  assert all(item['why'] for item in written['not_covered'])
  # train_batches depends on users' data sizes: a DP run leaves it empty.
  assert {r['train_batches'] for r in _rows(tree_run)} == {''}
  # Held-out users are unprotected: no per-user rows unless asked for.
  assert not os.path.exists(os.path.join(tree_run, rundir.USERS_FILE))


def test_simulation_only_follows_which_randomness_is_reproducible():
  def statement_of(noise, sampling):
    return statement.privacy_statement(
        mechanism='gaussian_fixed', noise_multiplier=1.0, clients_per_round=20,
        population_size=100, rounds=2, reproducible_noise=noise,
        reproducible_sampling=sampling)
  seeded = statement_of(True, True)
  assert len(seeded['simulation_caveats']) == 2 and not seeded['differentially_private']
  unseeded = statement_of(False, True)
  assert unseeded['simulation_only'] and len(unseeded['simulation_caveats']) == 1
  assert 'cohort sampling' in unseeded['simulation_caveats'][0]
  # Known cohorts lose the amplification, not the noise: still private, qualified.
  assert unseeded['differentially_private'] is True
  deployment = statement_of(False, False)
  assert deployment['simulation_only'] is False and deployment['simulation_caveats'] == []
  assert deployment['differentially_private'] is True
  none = statement.privacy_statement(mechanism='none', noise_multiplier=0.0,
                                   clients_per_round=20, population_size=100, rounds=2)
  assert 'not_covered' not in none and none['differentially_private'] is False


def test_restate_rewrites_a_recorded_statement_from_its_config(tmp_path):
  # A committed run's small files, with the statement an older version wrote.
  source = os.path.join(REPO, 'results', 'reference',
                        'mechanism-gaussian_fixed_target_epsilon-2_seed-0')
  run = str(tmp_path / 'run')
  shutil.copytree(source, run)
  path = os.path.join(run, rundir.PRIVACY_FILE)
  current = rundir.read_json(path)
  old = {k: v for k, v in current.items() if k != 'differentially_private_note'}
  rundir.write_json(path, {**old, 'differentially_private': True, 'audit_note': 'kept'})
  assert training.restate(run)
  assert rundir.read_json(path) == {**current, 'audit_note': 'kept'}
  assert not training.restate(run)  # nothing left to change


def test_unseeded_tree_noise_is_seeded_from_the_os_not_the_clock():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def noise_seeds():  # the seeds in the initial state of the factory's DP query (eager)
    settings = mechanisms.settings(
        mechanism='tree', noise_multiplier=1.0, clip=0.1, clients_per_round=20,
        population_size=100, sampling='shuffle', accountant='rdp', restart_period=4)
    factory = aggregators.build(settings, record_specs=[tf.TensorSpec([3], tf.float32)])
    state = factory._query.initial_global_state()  # pylint: disable=protected-access
    return [np.asarray(v) for v in tf.nest.flatten(state)
            if np.asarray(v).dtype == np.int64 and np.shape(v) == (2,)]

  first, second = noise_seeds(), noise_seeds()
  assert first and len(first) == len(second)
  microseconds = time.time() * 1e6  # TF Privacy's default seed: the clock, in us
  for a, b in zip(first, second):
    assert not np.array_equal(a, b)
    assert abs(float(a[0]) - microseconds) > 1e12


@pytest.mark.slow
def test_non_private_run_releases_local_steps_capped_per_client(finished):
  config = _config(**_FINISHED)
  data = tasks.get(config.task).build_data(config)
  for row in _rows(finished):
    cohort = training.sample_round(config, population_size=data.population_size,
                                   seed=config.seed, round_num=int(row['round']))
    with_examples = sum(1 for i in cohort.reporting if len(data.train_examples(int(i))[1]))
    # One local step per reporting client with examples (none for a user without):
    # the cap reached every client's loop.
    assert int(row['train_batches']) == with_examples > 0
    assert int(row['reported']) == len(cohort.reporting) >= with_examples


@pytest.mark.parametrize('flags, message', [
    (['--noise_multiplier=1', '--delta=0.01'], r'--delta=0.01 must be below 1 / population'),
    (['--noise_multiplier=1', '--delta=0.5'], r'--delta=0.5 must be below 1 / population'),
    (['--noise_multiplier=0'], r'--noise_multiplier must be in \[1e-06, 10000\]. Found 0'),
    (['--noise_multiplier=1e6'], r'--noise_multiplier must be in \[1e-06, 10000\]'),
    (['--noise_multiplier=1e-300'], r'--noise_multiplier must be in \[1e-06, 10000\]'),
    (['--noise_multiplier=1e-300', '--accountant=pld'],
     r'--noise_multiplier must be in \[1e-06, 10000\]'),
    (['--target_epsilon=1e6'], r'target_epsilon=1e\+06 is out of reach: noise multiplier '
                               r'0.01.*protects nothing'),
    (['--noise_multiplier=abc'], r"flag --noise_multiplier=abc: could not convert"),
    (['--noise_multiplier=1', 'stray'], r'unexpected argument\(s\) stray: every input is '
                                        r'a --flag'),
])
def test_privacy_cli_refuses_what_train_refuses_in_one_line(flags, message):
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'experiments', 'privacy.py'),
       '--num_clients=776', '--clients_per_round=50', '--rounds=40', *flags],
      capture_output=True, text=True, timeout=120)
  assert result.returncode == 2, result.stdout
  assert result.stderr.count('\n') == 1 and result.stderr.startswith('error: ')
  assert re.search(message, result.stderr), result.stderr


def test_train_applies_the_same_budget_validation():
  for overrides, message in (
      ({'dp.mechanism': 'gaussian_fixed', 'dp.noise_multiplier': 1e6},
       r'dp.noise_multiplier must be in \[1e-06, 10000\]'),
      ({'dp.mechanism': 'gaussian_fixed', 'dp.target_epsilon': 1e6},
       r'target_epsilon=1e\+06 is out of reach')):
    with pytest.raises(ValueError, match=message):
      config = _config(**overrides)
      training.check_config(config)
      training.resolve_config(config, population_size=120)


# --- 7-11: run-directory state ---------------------------------------------------------


def test_resume_without_metrics_is_refused_and_loses_nothing(copy):
  os.remove(os.path.join(copy, rundir.METRICS_FILE))
  before = sorted(os.listdir(os.path.join(copy, rundir.CHECKPOINT_DIR)))
  with pytest.raises(rundir.RunDirectoryError, match=r'metrics.csv is missing, but .* '
                     r'holds checkpoints up to round 3: resuming would lose'):
    training.train_and_evaluate(_config(**_FINISHED, num_rounds=5), copy)
  assert sorted(os.listdir(os.path.join(copy, rundir.CHECKPOINT_DIR))) == before
  assert rundir.read_json(os.path.join(copy, rundir.CONFIG_FILE))['num_rounds'] == 3


def test_a_locked_directory_is_refused_naming_the_holder(copy, tmp_path):
  with rundir.locked(copy):
    with pytest.raises(rundir.RunDirectoryError,
                       match=rf'in use by another process \(pid {os.getpid()}\)'):
      training.train_and_evaluate(_config(**_FINISHED, num_rounds=4), copy)
  sweep_dir = str(tmp_path / 'sweep')
  with rundir.locked(sweep_dir):
    with pytest.raises(rundir.RunDirectoryError, match=r'in use by another process'):
      sweeps.run_sweep([], sweep_dir, command=lambda p, d: ['true'], log=lambda m: None)
  assert rundir.read_json(os.path.join(copy, rundir.CONFIG_FILE))['num_rounds'] == 3


def test_lock_leaves_no_directory_behind_when_a_launch_is_refused(tmp_path):
  workdir = str(tmp_path / 'new')
  with pytest.raises(training.InvalidSettingsError, match=r'dp.delta=0.5 must be below'):
    training.train_and_evaluate(_config(**{'dp.delta': 0.5}), workdir)
  assert not os.path.exists(workdir)


@pytest.mark.parametrize('damage, reason', [
    (lambda d: rundir.write_csv(os.path.join(d, rundir.METRICS_FILE), ['round'], []),
     r'metrics.csv has 0 of 3 rounds'),
    (lambda d: os.remove(os.path.join(d, rundir.EVALUATION_FILE)), r'missing evaluation.json'),
    (lambda d: os.remove(os.path.join(d, rundir.FIGURE_DIR, 'calibration.png')),
     r'missing figures/calibration.png'),
    (lambda d: rundir.write_json(os.path.join(d, rundir.PRIVACY_FILE), {'rounds': 2}),
     r'privacy.json covers 2 rounds, metrics.csv 3'),
])
def test_one_definition_of_finished_for_train_and_sweep(finished, copy, damage, reason):
  assert rundir.incomplete_reasons(finished, 3) == []
  assert sweeps.is_complete(finished, 3)
  damage(copy)
  assert any(re.search(reason, r) for r in rundir.incomplete_reasons(copy, 3))
  assert not sweeps.is_complete(copy, 3)


@pytest.mark.slow
def test_a_failed_calibration_figure_is_drawn_again(finished, copy):
  figure = os.path.join(copy, rundir.FIGURE_DIR, 'calibration.png')
  os.remove(figure)
  training.train_and_evaluate(_config(**_FINISHED), copy)
  assert os.path.getsize(figure) > 1000
  assert _rows(copy) == _rows(finished)


def test_summary_shows_a_missing_metric_as_nan_not_inf():
  row = {'setting': 's', 'num_seeds': 1, 'epsilon_mean': 2.0, 'eval_auc_mean': float('nan'),
         'eval_auc_std': None, 'eval_accuracy_mean': 0.5, 'eval_accuracy_std': None,
         'eval_top3_accuracy_mean': None, 'eval_top3_accuracy_std': None}
  table = summary.format_summary([row])
  assert 'nan' in table and 'inf' not in table


def _corrupt(path, kind):
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write({'truncated': data[:len(data) // 2], 'zeroed': bytes(len(data)),
             'random': np.random.default_rng(0).bytes(len(data))}[kind])


@pytest.mark.parametrize('kind', ['truncated', 'zeroed', 'random'])
def test_a_corrupt_checkpoint_is_set_aside_for_the_one_before(copy, kind):
  path = rundir.checkpoint_path(copy, 3)
  _corrupt(path, kind)
  warnings = []
  round_num, leaves = rundir.load_latest_checkpoint(copy, warn=warnings.append)
  assert round_num == 2 and len(leaves) == len(rundir.load_checkpoint(copy, 2))
  assert len(warnings) == 1 and 'cannot be read' in warnings[0]
  assert os.path.exists(path + '.corrupt') and not os.path.exists(path)


@pytest.mark.slow
def test_a_run_with_a_corrupt_latest_checkpoint_resumes_the_same(finished, copy, caplog):
  # It used to end in a raw BadZipFile traceback.
  _corrupt(rundir.checkpoint_path(copy, 3), 'truncated')
  training.train_and_evaluate(_config(**_FINISHED), copy)
  assert 'Resuming from the checkpoint before it' in caplog.text
  assert _rows(copy) == _rows(finished)  # round 3 ran again, the same way
  assert rundir.load_checkpoint(copy, 3)


def test_every_checkpoint_corrupt_is_refused_clearly(copy):
  for r in rundir.checkpoint_rounds(copy):
    with open(rundir.checkpoint_path(copy, r), 'wb') as f:
      f.write(b'\0' * 100)
  with pytest.raises(rundir.RunDirectoryError, match=r'No checkpoint in .* can be read'):
    training.train_and_evaluate(_config(**_FINISHED), copy)


def test_lowering_num_rounds_of_a_finished_run_is_refused(copy):
  with pytest.raises(training.ConfigMismatchError,
                     match=r'holds a run of 3 completed rounds; num_rounds=2 is lower'):
    training.train_and_evaluate(_config(**_FINISHED, num_rounds=2), copy)
  assert rundir.read_json(os.path.join(copy, rundir.CONFIG_FILE))['num_rounds'] == 3


# --- 12: a sweep's points die with it ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killing_a_sweep_stops_its_points(tmp_path, sig):
  # Signalled as soon as its point has started (the point is still importing
  # TensorFlow): the point used to go on, and write on, after its sweep was gone.
  config = tmp_path / 'sweep.py'
  config.write_text(textwrap.dedent('''
      import ml_collections
      def get_config():
        c = ml_collections.ConfigDict()
        c.base_config = 'configs/churn.py'
        c.base_overrides = {'num_rounds': 500, 'clients_per_round': 20,
                            'data': {'num_users': 150, 'num_days': 40}}
        c.settings = [{'dp.mechanism': 'none'}]
        c.seeds = [0]
        return c
  '''))
  proc = subprocess.Popen(
      [sys.executable, os.path.join(REPO, 'experiments', 'sweep.py'), f'--config={config}',
       f'--workdir={tmp_path / "sweep"}', '--parallel=1'],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    children = set()
    deadline = time.monotonic() + 60
    while not children and time.monotonic() < deadline:
      time.sleep(0.1)
      children = {int(p) for p in os.listdir('/proc') if p.isdigit()
                  and _parent(int(p)) == proc.pid}
    assert children, 'the sweep should have started its point'
    time.sleep(0.5)  # past the fork: the point runs train.py
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=90)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  deadline = time.monotonic() + 30
  while time.monotonic() < deadline and any(_alive(p) for p in children):
    time.sleep(0.1)
  assert not any(_alive(p) for p in children), 'a point outlived its sweep'
  if sig != signal.SIGKILL:
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], err
    assert 'Traceback' not in err, err
  if sig != signal.SIGKILL:  # SIGTERM used to exit 143 without a line
    assert 'Interrupted; run the same command again' in err.strip().splitlines()[-1], err
  if sig == signal.SIGINT:
    assert err.strip().count('\n') == 0, err


def _parent(pid):
  try:
    return runtime._parent_pid(pid)  # pylint: disable=protected-access
  except (OSError, ValueError, IndexError):
    return None


def _alive(pid):
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False


# --- 14-15: input errors and divergence --------------------------------------------------


def _train_script(tmp_path, *overrides):
  """train.py on configs/churn.py into tmp_path/run with `overrides`."""
  return subprocess.run(
      [sys.executable, os.path.join(REPO, 'experiments', 'train.py'),
       '--config=' + os.path.join(REPO, 'configs', 'churn.py'),
       f'--workdir={tmp_path / "run"}', *overrides],
      capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_unknown_config_key_is_one_line_with_exit_code_2(tmp_path):
  result = _train_script(tmp_path, '--config.foo=1')
  assert result.returncode == 2
  assert "error: --config.foo: the config has no key 'foo'" in result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'run').exists()


def test_unusable_workdirs_are_refused_before_any_data_is_loaded(tmp_path):
  a_file = tmp_path / 'file'
  a_file.write_text('x')
  for workdir, message in ((a_file, r'is a file, not a directory'),
                           (a_file / 'run', r'is a file, not a directory'),
                           ('/proc/self/run', r'under a kernel file system')):
    with pytest.raises(rundir.RunDirectoryError, match=message):
      # An event file that does not exist: reaching the data would raise another error.
      training.train_and_evaluate(
          _config(**{'data.source': f'events:{tmp_path}/none.csv'}), str(workdir))


def test_damaged_run_files_are_named(copy):
  with open(os.path.join(copy, rundir.METRICS_FILE), 'a') as f:
    f.write('4,oops\n')
  with pytest.raises(rundir.RunDirectoryError, match=r'metrics.csv, line 5: not a metrics '
                     r'row written by fl-analytics'):
    training.train_and_evaluate(_config(**_FINISHED, num_rounds=5), copy)
  config_path = os.path.join(copy, rundir.CONFIG_FILE)
  with open(config_path) as f:
    text = f.read()
  with open(config_path, 'w') as f:
    f.write(text[:len(text) // 2])
  with pytest.raises(rundir.RunDirectoryError, match=r'config.json is not valid JSON'):
    training.train_and_evaluate(_config(**_FINISHED, num_rounds=5), copy)


def test_an_infinite_learning_rate_names_its_key_and_leaves_no_directory(tmp_path):
  with pytest.raises(training.InvalidSettingsError,
                     match=r'client.learning_rate must be > 0. Found inf. It must be finite'):
    training.train_and_evaluate(_config(**{'client.learning_rate': float('inf')}),
                                str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow
@pytest.mark.parametrize('mechanism', ['none', 'gaussian_fixed'])
def test_divergence_stops_the_run_and_keeps_the_last_good_round(tmp_path, mechanism):
  workdir = str(tmp_path / 'run')
  with pytest.raises(training.DivergenceError, match=r'Training diverged at round \d+: '
                     r'(train|eval)_loss is .*Lower client.learning_rate'):
    training.train_and_evaluate(
        _config(**{'dp.mechanism': mechanism, 'client.learning_rate': 1e6,
                   'server.learning_rate': 1e6}), workdir)
  rows = _rows(workdir)
  assert len(rows) == rundir.latest_checkpoint_round(workdir) < 3
  for row in rows:
    assert float(row['train_loss']) <= training.DIVERGENCE_FACTOR * np.log(2)


@pytest.mark.slow
def test_a_diverging_run_whose_clip_does_not_hold_is_an_audit_failure(tmp_path,
                                                                       monkeypatch):
  """The registry's gaussian_fixed replaced by a build that does not clip (the noise
  as accounted, `sabotage.no_clip`'s fault): the diverging run names the clip."""
  import dataclasses  # pylint: disable=g-import-not-at-top

  from fl_analytics.privacy import mechanisms  # pylint: disable=g-import-not-at-top

  honest = mechanisms.get('gaussian_fixed')
  unclipped = dataclasses.replace(honest, build=lambda settings, **kw: honest.build(
      dataclasses.replace(settings, clip=settings.clip * 1e6,
                          noise_multiplier=settings.noise_multiplier / 1e6), **kw))
  monkeypatch.setitem(mechanisms.REGISTRY, 'gaussian_fixed', unclipped)
  with pytest.raises(training.DivergenceError, match=r'Training diverged at round \d+: '
                     r'.*Audit failure: the clip of dp.mechanism=gaussian_fixed does not '
                     r'hold \(an insertion of 1000 clips moves the sum by'):
    training.train_and_evaluate(
        _config(**{'dp.mechanism': 'gaussian_fixed', 'client.learning_rate': 1e6,
                   'server.learning_rate': 1e6}), str(tmp_path / 'run'))


@pytest.mark.slow
def test_secret_sampling_uses_a_seed_that_config_json_does_not_give_away(tmp_path):
  from fl_analytics.privacy import sampling  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(_config(**{'dp.mechanism': 'gaussian_fixed',
                                         'dp.reproducible_noise': False,
                                         'dp.reproducible_sampling': False,
                                         'num_rounds': 2}), workdir)
  written = rundir.read_json(os.path.join(workdir, rundir.PRIVACY_FILE))
  assert written['simulation_only'] is False and written['simulation_caveats'] == []
  path = os.path.join(workdir, rundir.SECRET_SAMPLING_SEED_FILE)
  assert os.stat(path).st_mode & 0o777 == 0o600
  secret = rundir.secret_seed(workdir)
  config_text = open(os.path.join(workdir, rundir.CONFIG_FILE)).read()
  assert str(secret) not in config_text
  population = rundir.read_json(os.path.join(workdir, rundir.CONFIG_FILE))[
      'resolved']['population_size']
  sizes = [len(sampling.cohort(sampling='poisson', population_size=population,
                               clients_per_round=20, seed=secret, round_num=r))
           for r in (1, 2)]
  assert [int(r['cohort_size']) for r in _rows(workdir)] == sizes


def test_a_run_without_its_config_json_is_refused(copy):
  os.remove(os.path.join(copy, rundir.CONFIG_FILE))
  with pytest.raises(rundir.RunDirectoryError, match=r'config.json is missing, but .* '
                     r'holds the metrics or checkpoints of a run'):
    training.train_and_evaluate(_config(**_FINISHED), copy)


# --- Issue 30: the run directory never lies --------------------------------------------


def _bytes(workdir, name):
  with open(os.path.join(workdir, name), 'rb') as f:
    return f.read()


@pytest.mark.slow
def test_a_kill_between_the_last_checkpoint_and_its_statement_is_repaired_on_rerun(
    monkeypatch, tmp_path):
  config, workdir = _config(**{'dp.mechanism': 'gaussian_fixed'}), str(tmp_path / 'run')
  write = rundir.write_json

  def killed(path, obj):  # round 3's checkpoint is in place, its statement is not
    if path.endswith(rundir.PRIVACY_FILE) and obj.get('rounds') == 3:
      raise KeyboardInterrupt
    write(path, obj)

  monkeypatch.setattr(rundir, 'write_json', killed)
  with pytest.raises(KeyboardInterrupt):
    training.train_and_evaluate(config, workdir)
  monkeypatch.setattr(rundir, 'write_json', write)
  assert rundir.read_json(os.path.join(workdir, rundir.PRIVACY_FILE))['rounds'] == 2
  training.train_and_evaluate(config, workdir)
  written = rundir.read_json(os.path.join(workdir, rundir.PRIVACY_FILE))
  assert written['rounds'] == 3
  assert written['epsilon'] == pytest.approx(float(_rows(workdir)[-1]['epsilon']), rel=1e-12)
  assert not rundir.incomplete_reasons(workdir, 3)


@pytest.mark.slow
def test_a_resume_without_its_secret_sampling_seed_is_refused(tmp_path):
  config = _config(**{'num_rounds': 2, 'dp.reproducible_sampling': False})
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(config, workdir)
  os.unlink(os.path.join(workdir, rundir.SECRET_SAMPLING_SEED_FILE))
  before = _bytes(workdir, rundir.METRICS_FILE)
  with pytest.raises(rundir.RunDirectoryError, match='secret_sampling_seed is missing'):
    training.train_and_evaluate(_config(**{'num_rounds': 3,
                                           'dp.reproducible_sampling': False}), workdir)
  assert _bytes(workdir, rundir.METRICS_FILE) == before


def test_checkpoints_that_are_not_a_directory_are_refused_and_lose_nothing(copy):
  shutil.rmtree(os.path.join(copy, rundir.CHECKPOINT_DIR))
  open(os.path.join(copy, rundir.CHECKPOINT_DIR), 'w').close()
  before = _bytes(copy, rundir.METRICS_FILE)
  with pytest.raises(rundir.RunDirectoryError, match='checkpoints is not a directory'):
    training.train_and_evaluate(_config(**_FINISHED, num_rounds=4), copy)
  assert _bytes(copy, rundir.METRICS_FILE) == before


def test_unreadable_checkpoints_are_refused_on_every_rerun_not_started_over(copy):
  for round_num in rundir.checkpoint_rounds(copy):
    with open(rundir.checkpoint_path(copy, round_num), 'r+b') as f:
      f.write(b'\0' * 64)
  before = _bytes(copy, rundir.METRICS_FILE)
  config = _config(**_FINISHED, num_rounds=4)
  with pytest.raises(rundir.RunDirectoryError, match='No checkpoint .* can be read'):
    training.train_and_evaluate(config, copy)
  with pytest.raises(rundir.RunDirectoryError,
                     match='has 3 rounds, but the newest readable checkpoint .* round 0'):
    training.train_and_evaluate(config, copy)  # the .corrupt files are not a fresh start
  assert _bytes(copy, rundir.METRICS_FILE) == before


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_refused_naming_it(copy):
  path = rundir.checkpoint_path(copy, rundir.latest_checkpoint_round(copy))
  np.savez(path, np.zeros(3))
  with pytest.raises(rundir.RunDirectoryError, match=r'round_000003\.npz does not fit '
                     r'the run in config.json \(1 arrays, not the'):
    training.train_and_evaluate(_config(**_FINISHED, num_rounds=4), copy)


@pytest.mark.parametrize('overrides, message', [
    ({'model.hidden_units': -1}, r'model.hidden_units must be an integer >= 0'),
    ({'seed': -1}, r'seed must be an integer in \[0, 2\*\*63\). Found -1'),
    ({'data.seed': 2**64 + 1}, r'data.seed must be an integer in \[0, 2\*\*63\)'),
    ({'data.quantity_skew': float('nan')},
     r'data.quantity_skew must be a finite number >= 0. Found nan'),
    ({'dp.mechanism': 'none', 'dp.target_epsilon': 2.0},
     r'dp.target_epsilon=2.0 is set, but dp.mechanism=none adds no noise'),
    ({'data.source': 'events:/data/events.csv', 'evaluation.per_user_rows': True},
     r'each row of eval_users.csv can be linked back to its real user'),
])
def test_settings_that_were_silently_accepted_are_refused_by_name(overrides, message):
  with pytest.raises(ValueError, match=message):
    training.check_config(_config(**overrides))


def _remove(path):
  if os.path.isdir(path):
    shutil.rmtree(path)
  elif os.path.lexists(path):
    os.unlink(path)


def _replace_with(kind):
  def damage(path):
    _remove(path)
    if kind == 'directory':
      os.mkdir(path)
    elif kind == 'fifo':
      os.mkfifo(path)
    else:  # JSON of the wrong type
      with open(path, 'w') as f:
        f.write(kind)
  return damage


@pytest.mark.parametrize('name, kind, message', [
    (rundir.CONFIG_FILE, '[]', r'config.json holds a JSON list, not the object'),
    (rundir.CONFIG_FILE, 'null', r'config.json holds a JSON null, not the object'),
    (rundir.CONFIG_FILE, 'directory', r'config.json is not a regular file'),
    (rundir.METRICS_FILE, 'directory', r'metrics.csv is not a regular file'),
    (rundir.EVALUATION_FILE, 'directory', r'evaluation.json is not a regular file'),
    (rundir.PRIVACY_FILE, 'directory', r'privacy.json is not a regular file'),
    (rundir.LOCK_FILE, 'fifo', r'\.lock is not a regular file'),
])
def test_a_run_file_of_the_wrong_kind_is_refused_by_name(copy, name, kind, message):
  _replace_with(kind)(os.path.join(copy, name))
  with pytest.raises(rundir.RunDirectoryError, match=message):
    training.train_and_evaluate(_config(**_FINISHED, num_rounds=4), copy)


@pytest.mark.slow
@pytest.mark.parametrize('name, kind', [(rundir.PRIVACY_FILE, '[]'),
                                        (rundir.EVALUATION_FILE, '[1]')])
def test_a_statement_or_evaluation_of_the_wrong_type_is_written_again(
    finished, copy, name, kind):
  _replace_with(kind)(os.path.join(copy, name))
  assert rundir.incomplete_reasons(copy, 3)  # not taken as finished
  training.train_and_evaluate(_config(**_FINISHED), copy)
  assert not rundir.incomplete_reasons(copy, 3)
  assert (rundir.read_json(os.path.join(copy, name))
          == rundir.read_json(os.path.join(finished, name)))


# --- 2-3: the data is part of the run's identity --------------------------------------


@pytest.mark.slow
def test_resuming_on_edited_event_data_is_refused_and_loses_nothing(tmp_path):
  path = str(tmp_path / 'events.csv')
  base = _config()
  events.write_events(synthetic.generate_population(
      num_users=base.data.num_users, seed=1, num_days=base.data.num_days), path)
  workdir = str(tmp_path / 'run')
  config = lambda rounds: _config(num_rounds=rounds, **{'data.source': f'events:{path}'})
  training.train_and_evaluate(config(2), workdir)
  config_path = os.path.join(workdir, rundir.CONFIG_FILE)
  stored = rundir.read_json(config_path)
  assert stored['resolved']['data_fingerprint'] == 'sha256:' + rundir.file_digest(path)
  event_store_test._same_size_edit(path)  # pylint: disable=protected-access
  before = _bytes(workdir, rundir.METRICS_FILE)
  with pytest.raises(rundir.RunDirectoryError,
                     match=r'trained on other data \(data.source=events:'):
    training.train_and_evaluate(config(3), workdir)
  assert _bytes(workdir, rundir.METRICS_FILE) == before
  # A run recorded before the fingerprint resumes, and records it from then on.
  del stored['resolved']['data_fingerprint']
  rundir.write_json(config_path, stored)
  training.train_and_evaluate(config(3), workdir)
  assert rundir.read_json(config_path)['resolved']['data_fingerprint'] == (
      'sha256:' + rundir.file_digest(path))


def test_resuming_on_another_generator_version_is_refused(copy, monkeypatch):
  recorded = rundir.read_json(os.path.join(copy, rundir.CONFIG_FILE))
  assert recorded['resolved']['data_fingerprint'].startswith(
      f'synthetic:archetypes-v{synthetic.GENERATOR_VERSION}:')
  recorded_generator = generators.REGISTRY['archetypes']
  monkeypatch.setitem(generators.REGISTRY, 'archetypes', dataclasses.replace(
      recorded_generator, version=recorded_generator.version + 1))
  with pytest.raises(rundir.RunDirectoryError, match='trained on other data'):
    training.train_and_evaluate(_config(**_FINISHED, num_rounds=4), copy)


# --- 9: a Ray address with nothing listening ----------------------------------------------


def test_a_ray_address_with_nothing_listening_fails_at_once_before_any_write(tmp_path):
  workdir = tmp_path / 'run'
  t0 = time.monotonic()
  with pytest.raises(ConnectionError, match=r"'127.0.0.1:1': nothing answers there"):
    training.train_and_evaluate(_config(**{'runtime.ray_address': '127.0.0.1:1'}),
                                str(workdir))
  with pytest.raises(ConnectionError, match=r"'127.0.0.1:1': nothing answers there"):
    sweeps.run_sweep([], str(workdir), command=None, ray_address='127.0.0.1:1')
  assert time.monotonic() - t0 < 15
  assert not workdir.exists()


@pytest.mark.slow
def test_train_with_a_dead_ray_address_is_one_line(tmp_path):
  result = _train_script(tmp_path, '--config.runtime.ray_address=127.0.0.1:1')
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      "error: Cannot connect to a Ray cluster at '127.0.0.1:1'"), result.stderr
  assert not (tmp_path / 'run').exists()


# --- Every file of a run directory, damaged every way --------------------------------------

_SECRET = {**_FINISHED, 'dp.reproducible_sampling': False}  # a secret seed file too
_RUN_FILES = (rundir.CONFIG_FILE, rundir.METRICS_FILE, rundir.PRIVACY_FILE,
              rundir.EVALUATION_FILE, rundir.CALIBRATION_FILE,
              os.path.join(rundir.FIGURE_DIR, 'calibration.png'),
              os.path.join(rundir.CHECKPOINT_DIR, 'round_000003.npz'),
              rundir.SECRET_SAMPLING_SEED_FILE, rundir.LOCK_FILE)
_DAMAGES = ('deleted', 'empty', 'wrong_type', 'directory', 'truncated', 'other_run')


@pytest.fixture(scope='module')
def secret_runs(tmp_path_factory):
  """(a finished run with a secret seed, another finished run of another seed)."""
  root = tmp_path_factory.mktemp('secret')
  runs = []
  for seed in (0, 1):
    workdir = str(root / f'run{seed}')
    training.train_and_evaluate(_config(**_SECRET, seed=seed), workdir)
    runs.append(workdir)
  return runs


def _damage(path, kind, other):
  with open(path, 'rb') as f:
    half = f.read()[:os.path.getsize(path) // 2]
  _remove(path)
  if kind == 'directory':
    os.mkdir(path)
  elif kind == 'other_run':
    shutil.copyfile(other, path)
  elif kind != 'deleted':
    with open(path, 'wb') as f:
      f.write({'empty': b'', 'wrong_type': b'[]\n', 'truncated': half}[kind])


def _outcome(workdir):
  """What a finished run says: metrics (without timings), statement, evaluation
  (without the file digests), final model."""
  evaluation = rundir.read_json(os.path.join(workdir, rundir.EVALUATION_FILE))
  return (_rows(workdir), rundir.read_json(os.path.join(workdir, rundir.PRIVACY_FILE)),
          {k: v for k, v in evaluation.items() if k != 'files'},
          [np.asarray(leaf).tolist() for leaf in rundir.load_checkpoint(workdir, 3)])


@pytest.mark.slow
@pytest.mark.parametrize('kind', _DAMAGES)
@pytest.mark.parametrize('name', _RUN_FILES)
def test_every_run_file_damaged_is_refused_by_name_or_recovered_identically(
    secret_runs, tmp_path, name, kind):
  finished, other = secret_runs
  workdir = str(tmp_path / 'run')
  shutil.copytree(finished, workdir, ignore=shutil.ignore_patterns(rundir.LOCK_FILE))
  open(os.path.join(workdir, rundir.LOCK_FILE), 'w').close()
  open(os.path.join(other, rundir.LOCK_FILE), 'a').close()
  _damage(os.path.join(workdir, name), kind, os.path.join(other, name))
  metrics = os.path.join(workdir, rundir.METRICS_FILE)
  before = _bytes(workdir, rundir.METRICS_FILE) if os.path.isfile(metrics) else None
  try:
    training.train_and_evaluate(_config(**_SECRET), workdir)
  except (rundir.RunDirectoryError, training.InvalidSettingsError) as e:
    named = os.path.basename(name).split('_0')[0]  # round_000003.npz: 'round'
    assert named in str(e) or (name == rundir.CONFIG_FILE and 'config' in str(e)), e
    if name != rundir.METRICS_FILE:  # nothing lost
      assert _bytes(workdir, rundir.METRICS_FILE) == before
    return
  assert not rundir.incomplete_reasons(workdir, 3)
  assert _outcome(workdir) == _outcome(finished)
