"""End to end: tiny DP-FedAvg runs, their files, calibration, resume and refusals."""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import tiny_config
from fl_analytics.tasks import models
from fl_analytics.privacy import statement
from fl_analytics.reporting import report
from fl_analytics.core import rundir
from fl_analytics import tasks
from fl_analytics.runs import training
from fl_analytics.data import clients
from fl_analytics.data import events
from fl_analytics.data import features
from fl_analytics.data import synthetic

NUM_FEATURES = features.num_features(synthetic.EVENT_VOCAB)  # the default generator


def crash_before_checkpoint(monkeypatch, config, workdir, *, round_num: int):
  """Runs `config` in `workdir` and crashes at the worst moment: round `round_num`'s
  metrics row is written, its checkpoint not."""
  save = rundir.save_checkpoint

  def crash(directory, r, leaves, **kw):
    if r == round_num:
      raise KeyboardInterrupt
    save(directory, r, leaves, **kw)

  monkeypatch.setattr(rundir, 'save_checkpoint', crash)
  with pytest.raises(KeyboardInterrupt):
    training.train_and_evaluate(config, workdir)
  monkeypatch.setattr(rundir, 'save_checkpoint', save)


def _metrics(workdir, drop=('round_seconds',)):
  return [{k: v for k, v in row.items() if k not in drop}
          for row in rundir.read_csv(os.path.join(workdir, 'metrics.csv'))]


@pytest.mark.slow
@pytest.mark.parametrize('mechanism', ['none', 'gaussian_fixed', 'gaussian_adaptive',
                                       'tree'])
def test_two_round_run_writes_the_run_directory_contract(tmp_path, mechanism):
  workdir = str(tmp_path / mechanism)
  sampling = 'shuffle' if mechanism == 'tree' else 'poisson'
  last = training.train_and_evaluate(
      tiny_config(sampling=sampling, **{'dp.mechanism': mechanism}), workdir)

  rows = rundir.read_csv(os.path.join(workdir, 'metrics.csv'))
  assert [r['round'] for r in rows] == ['1', '2']
  for column in ('round', 'epsilon', 'train_loss', 'eval_loss', 'eval_accuracy',
                 'eval_auc', 'round_seconds'):
    assert column in rows[0]
  for row in rows:
    assert math.isfinite(float(row['train_loss']))
    assert 0.0 <= float(row['eval_auc']) <= 1.0
    assert 0.0 <= float(row['eval_accuracy']) <= 1.0
    assert float(row['round_seconds']) > 0
  assert last['round'] == 2

  written = rundir.read_json(os.path.join(workdir, 'privacy.json'))
  config = rundir.read_json(os.path.join(workdir, 'config.json'))
  population = config['resolved']['population_size']
  assert written['population_size'] == population
  assert written['rounds'] == 2 and written['clients_per_round'] == 20
  assert written['unit_of_privacy'].startswith("one user's whole data")
  if mechanism == 'none':
    assert [r['epsilon'] for r in rows] == ['inf', 'inf']
    assert written['epsilon'] is None
  else:
    expected = [statement.epsilon_spent(noise_multiplier=1.0, clients_per_round=20,
                                      population_size=population, sampling=sampling,
                                      rounds=t, delta=1e-5) for t in (1, 2)]
    assert [float(r['epsilon']) for r in rows] == pytest.approx(expected)
    assert written['epsilon'] == pytest.approx(expected[1])
    assert written['noise_multiplier'] == 1.0
  if mechanism == 'gaussian_adaptive':
    assert float(rows[1]['clip']) != float(rows[0]['clip'])  # the clip adapts
  events = os.listdir(os.path.join(workdir, 'tensorboard'))
  assert any(name.startswith('events.out.tfevents') for name in events)
  assert not [n for n in os.listdir(workdir) if n.startswith('.tmp-')]
  summary = report.run_summary(workdir)
  assert 'Held-out users at round 2: AUC' in summary
  assert ('epsilon' in summary) == (mechanism != 'none')


@pytest.mark.slow
def test_target_epsilon_is_calibrated_and_recorded(tmp_path):
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(
      tiny_config(**{'dp.mechanism': 'gaussian_fixed', 'dp.target_epsilon': 3.0}),
      workdir)
  config = rundir.read_json(os.path.join(workdir, 'config.json'))
  written = rundir.read_json(os.path.join(workdir, 'privacy.json'))
  assert config['dp']['noise_multiplier'] != 1.0
  assert written['noise_multiplier'] == config['dp']['noise_multiplier']
  assert written['epsilon'] <= 3.0
  assert written['epsilon'] == pytest.approx(3.0, rel=1e-2)


@pytest.mark.slow
def test_distributed_skellam_run_is_calibrated_and_accounted_from_its_parameters(tmp_path):
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(
      tiny_config(sampling='fixed_size', **{'dp.mechanism': 'distributed',
                                            'dp.target_epsilon': 8.0, 'dp.bits': 14}),
      workdir)
  config = rundir.read_json(os.path.join(workdir, 'config.json'))
  written = rundir.read_json(os.path.join(workdir, 'privacy.json'))
  params = config['resolved']['distributed']
  assert written['distributed_parameters'] == params
  assert params['bits'] == 14 and params['dim'] == models.churn_num_parameters(
      num_features=NUM_FEATURES, hidden_units=config['model']['hidden_units'])
  rows = rundir.read_csv(os.path.join(workdir, 'metrics.csv'))
  expected = [statement.distributed_epsilon(
      params=params, clients_per_round=20, population_size=written['population_size'],
      rounds=t) for t in (1, 2)]
  assert [float(r['epsilon']) for r in rows] == pytest.approx(expected, rel=1e-12)
  assert written['epsilon'] <= 8.0 and written['epsilon'] == pytest.approx(8.0, rel=1e-3)
  assert written['neighboring_relation'] == 'replace one user'
  assert 'Skellam' in written['analysis'] and 'report' in written['assumptions']
  assert 'simulates the secure sum' in written['secure_aggregation']
  for row in rows:
    assert math.isfinite(float(row['train_loss'])) and 0 <= float(row['eval_auc']) <= 1


@pytest.mark.slow
def test_secure_sum_runs_accounts_its_quantization_and_matches_the_plain_sum(tmp_path):
  plain, secure = str(tmp_path / 'plain'), str(tmp_path / 'secure')
  base = {'dp.mechanism': 'gaussian_fixed', 'dp.target_epsilon': 3.0}
  training.train_and_evaluate(tiny_config(**base), plain)
  training.train_and_evaluate(tiny_config(**base, **{'dp.secure_sum': True}), secure)

  config = rundir.read_json(os.path.join(secure, 'config.json'))
  written = rundir.read_json(os.path.join(secure, 'privacy.json'))
  factor = statement.secure_sum_sensitivity_factor(models.churn_num_parameters(
      num_features=NUM_FEATURES, hidden_units=config['model']['hidden_units']))
  assert 1.0 < factor < 1.0 + 1e-6
  assert config['resolved']['sensitivity_factor'] == factor
  plain_z = rundir.read_json(os.path.join(plain, 'config.json'))['dp']['noise_multiplier']
  assert config['dp']['noise_multiplier'] == pytest.approx(factor * plain_z, rel=1e-12)
  assert written['accounted_noise_multiplier'] == pytest.approx(plain_z, rel=1e-12)
  assert written['epsilon'] == pytest.approx(statement.epsilon_spent(
      noise_multiplier=config['dp']['noise_multiplier'] / factor, clients_per_round=20,
      population_size=written['population_size'], rounds=2, delta=1e-5))
  assert 'simulates the secure sum' in written['secure_aggregation']
  # Same seed, same noise: the 32-bit quantized sum changes the model by rounding only.
  for a, b in zip(_metrics(plain), _metrics(secure)):
    for key in ('train_loss', 'eval_loss', 'eval_auc'):
      assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4), key


@pytest.mark.slow
def test_compression_logs_the_bytes_sent_and_is_accounted(tmp_path):
  sizes = models.churn_tensor_sizes(num_features=NUM_FEATURES,
                                    hidden_units=32)
  plain, none8 = str(tmp_path / 'plain'), str(tmp_path / 'none8')
  training.train_and_evaluate(tiny_config(**{'dp.mechanism': 'none'}), plain)
  training.train_and_evaluate(
      tiny_config(**{'dp.mechanism': 'none', 'compression.bits': 8}), none8)
  plain_bytes = [float(r['client_bytes']) for r in _metrics(plain)]
  none8_bytes = [float(r['client_bytes']) for r in _metrics(none8)]
  # Uncompressed, a client sends at least its float32 update; with 8 bits, the 512-
  # element kernel shrinks to a quarter (packed), plus the encoder's few scalars (its
  # range and the parameters TFF sends back); tensors of <= 100 elements stay.
  assert all(b >= 4 * sum(sizes) for b in plain_bytes)
  saved = 4 * sizes[0] - sizes[0]  # 3 bytes per kernel element
  assert all(saved - 128 <= p - c <= saved for p, c in zip(plain_bytes, none8_bytes)), (
      plain_bytes, none8_bytes)
  assert 'quantized to 8 bits' in rundir.read_json(
      os.path.join(none8, 'privacy.json'))['compression']

  for mechanism, sampling in (('gaussian_fixed', 'poisson'), ('tree', 'shuffle')):
    workdir = str(tmp_path / mechanism)
    training.train_and_evaluate(tiny_config(sampling=sampling, **{
        'dp.mechanism': mechanism, 'compression.bits': 4}), workdir)
    written = rundir.read_json(os.path.join(workdir, 'privacy.json'))
    factor = statement.compression_sensitivity_factor(bits=4, tensor_sizes=sizes,
                                                    threshold=100)
    assert factor == 1 + math.sqrt(2 * 512) / 15
    assert written['sensitivity_factor'] == factor
    assert written['epsilon'] == pytest.approx(statement.epsilon_spent(
        noise_multiplier=1.0 / factor, clients_per_round=20, sampling=sampling,
        population_size=written['population_size'], rounds=2, delta=1e-5))
    rows = _metrics(workdir)
    assert all(math.isfinite(float(r['train_loss'])) for r in rows)
    assert all(float(r['client_bytes']) < min(plain_bytes) for r in rows)


@pytest.mark.slow
def test_training_on_an_exported_event_file_uses_the_same_user_logs(tmp_path):
  config = tiny_config(**{'dp.mechanism': 'none', 'num_rounds': 1})
  logs, _, _, _ = clients.load_logs(config.data, seed=config.data.seed)
  path = str(tmp_path / 'events.parquet')
  events.write_events(logs, path)
  from_file = tiny_config(**{'dp.mechanism': 'none', 'num_rounds': 1,
                             'data.source': f'events:{path}'})
  data = tasks.get('churn').population(from_file.data, seed=from_file.data.seed)
  # Every user with events is in the file; the file spans the days that have events.
  assert data.population_size + data.num_eval_users == sum(
      1 for log in logs if len(log.events))
  last = training.train_and_evaluate(from_file, str(tmp_path / 'run'))
  assert 0 <= float(last['eval_auc']) <= 1


@pytest.mark.slow
@pytest.mark.parametrize('engine', ['mapreduce', pytest.param('cpp', marks=pytest.mark.cpp)])
def test_dropout_consent_and_step_caps_reach_the_round_and_privacy_json(tmp_path, engine):
  workdir = str(tmp_path / 'run')
  config = tiny_config(**{'dp.mechanism': 'gaussian_fixed', 'clients.dropout': 0.4,
                          'clients.opt_out': 0.2, 'clients.max_local_steps': 'uniform:1:1',
                          'runtime.engine': engine})
  training.train_and_evaluate(config, workdir)
  rows = _metrics(workdir)
  written = rundir.read_json(os.path.join(workdir, 'privacy.json'))
  full = tasks.get('churn').population(config.data, seed=config.data.seed)
  data = tasks.get('churn').population(config.data, seed=config.data.seed, opt_out=0.2)
  assert data.num_opted_out == 30  # 20% of 150 users
  assert written['opted_out_users'] == 30
  assert written['population_size'] == data.population_size < full.population_size
  assert written['epsilon'] == pytest.approx(statement.epsilon_spent(
      noise_multiplier=1.0, clients_per_round=20, population_size=data.population_size,
      rounds=2, delta=1e-5))
  assert 'fails to report with probability 0.4' in written['notes']
  assert 'never sampled and their data is never used' in written['notes']
  for row in rows:
    assert 0 < int(row['reported']) < int(row['cohort_size'])
    # Local steps depend on users' data sizes: not released by DP runs (the cap reaching
    # every client's loop is checked on a non-private run in reliability_test).
    assert row['train_batches'] == ''


@pytest.mark.slow
def test_final_evaluation_writes_per_user_metrics_calibration_and_personalization(
    tmp_path):
  workdir = str(tmp_path / 'run')
  config = tiny_config(**{'dp.mechanism': 'gaussian_fixed',
                          'evaluation.per_user_rows': True})
  training.train_and_evaluate(config, workdir)
  result = rundir.read_json(os.path.join(workdir, 'evaluation.json'))
  users = rundir.read_csv(os.path.join(workdir, 'eval_users.csv'))
  data = tasks.get('churn').population(config.data, seed=config.data.seed)
  assert result['round'] == 2
  held_out = data.held_out()
  assert result['per_user']['users'] == len(users) == len(held_out.users)
  assert sum(int(u['examples']) for u in users) == len(held_out.y)
  assert 0 <= result['per_user']['share_worse_than_baseline_loss'] <= 1
  bins = rundir.read_csv(os.path.join(workdir, 'calibration.csv'))
  assert sum(int(b['count']) for b in bins) == len(held_out.y)
  pers = result['personalization']
  assert pers['steps'] == 5 and 0 < pers['users'] <= len(users)
  assert pers['global']['base_rate'] == pers['personalized']['base_rate']
  assert os.path.getsize(os.path.join(workdir, 'figures', 'calibration.png')) > 1000
  summary = report.run_summary(workdir)
  assert 'Per held-out user' in summary and 'Personalization (5 local steps' in summary

  # Lost after the last checkpoint (a crash): the next launch evaluates again, only.
  os.remove(os.path.join(workdir, 'evaluation.json'))
  before = _metrics(workdir, drop=())
  training.train_and_evaluate(config, workdir)
  again = rundir.read_json(os.path.join(workdir, 'evaluation.json'))
  # The same evaluation; the file digests differ (eval_users.csv's order is random).
  assert {k: v for k, v in again.items() if k != 'files'} == {
      k: v for k, v in result.items() if k != 'files'}
  assert _metrics(workdir, drop=()) == before


def test_next_action_task_trains_with_dp_and_reports_top_k_accuracy(tmp_path):
  from configs import next_action  # pylint: disable=g-import-not-at-top

  config = next_action.get_config()
  for key, value in tiny_config().items():  # the tiny population and rounds
    if key in ('num_rounds', 'eval_every', 'clients_per_round'):
      config[key] = value
  config.data.update(dict(num_users=150, num_days=40))
  config.data.max_examples_per_user = 32
  config.dp.mechanism = 'gaussian_fixed'
  config.evaluation.personalization_steps = 2
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(config, workdir)
  rows = _metrics(workdir)
  for row in rows:
    assert 0 <= float(row['eval_accuracy']) <= float(row['eval_top3_accuracy']) <= 1
    assert 0 < float(row['eval_majority_accuracy']) < 1
    assert row['eval_auc'] == '' and math.isfinite(float(row['train_loss']))
  resolved = rundir.read_json(os.path.join(workdir, 'config.json'))
  assert resolved['task'] == 'next_action' and 'num_features' not in resolved['resolved']
  result = rundir.read_json(os.path.join(workdir, 'evaluation.json'))
  assert 'calibration' not in result and 'most frequent action' in result['baseline']
  assert 'top3_accuracy' in result['personalization']['personalized']
  assert 'top-3 accuracy' in report.run_summary(workdir)


@pytest.mark.slow
@pytest.mark.parametrize('sampling, accountant', [('fixed_size', 'rdp'), ('poisson', 'pld')])
def test_sampling_and_accountant_reach_cohort_and_privacy_json(tmp_path, sampling,
                                                                accountant):
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(
      tiny_config(sampling=sampling, **{'dp.accountant': accountant,
                                        'dp.mechanism': 'gaussian_fixed'}), workdir)
  rows = rundir.read_csv(os.path.join(workdir, 'metrics.csv'))
  written = rundir.read_json(os.path.join(workdir, 'privacy.json'))
  assert written['sampling'] == sampling and written['accountant'] == accountant
  assert written['epsilon'] == pytest.approx(statement.epsilon_spent(
      noise_multiplier=1.0, clients_per_round=20,
      population_size=written['population_size'], rounds=2, delta=1e-5,
      sampling=sampling, accountant=accountant))
  if sampling == 'fixed_size':
    assert [r['cohort_size'] for r in rows] == ['20', '20']
    assert written['neighboring_relation'] == 'replace one user'


@pytest.mark.slow
def test_budget_guard_stops_before_the_round_that_would_exceed_it(tmp_path):
  workdir = str(tmp_path / 'run')
  config = tiny_config(num_rounds=10, **{'dp.mechanism': 'gaussian_fixed'})
  population = tasks.get('churn').population(config.data, seed=config.data.seed).population_size
  eps = [statement.epsilon_spent(noise_multiplier=1.0, clients_per_round=20,
                               population_size=population, rounds=t) for t in (3, 4)]
  config.dp.max_epsilon = (eps[0] + eps[1]) / 2
  training.train_and_evaluate(config, workdir)
  written = rundir.read_json(os.path.join(workdir, 'privacy.json'))
  assert written['population_size'] == population
  assert written['rounds'] == 3
  assert written['epsilon'] == pytest.approx(eps[0]) and eps[0] <= config.dp.max_epsilon
  assert len(rundir.read_csv(os.path.join(workdir, 'metrics.csv'))) == 3
  assert rundir.latest_checkpoint_round(workdir) == 3
  # Raising the budget continues the run from its checkpoint.
  config.dp.max_epsilon = 100.0
  config.num_rounds = 4
  training.train_and_evaluate(config, workdir)
  assert rundir.read_json(os.path.join(workdir, 'privacy.json'))['rounds'] == 4


@pytest.mark.slow
@pytest.mark.parametrize('mechanism, sampling', [('gaussian_adaptive', 'poisson'),
                                                 ('tree', 'shuffle')])
def test_resume_after_crash_equals_uninterrupted_run(tmp_path, monkeypatch, mechanism,
                                                     sampling):
  config = tiny_config(num_rounds=4, sampling=sampling, **{'dp.mechanism': mechanism})
  straight = str(tmp_path / 'straight')
  training.train_and_evaluate(config, straight)

  crashed = str(tmp_path / 'crashed')
  crash_before_checkpoint(monkeypatch, config, crashed, round_num=3)
  assert len(_metrics(crashed)) == 3 and rundir.latest_checkpoint_round(crashed) == 2

  training.train_and_evaluate(config, crashed)  # the same command again
  assert _metrics(crashed) == _metrics(straight)


@pytest.mark.slow
def test_larger_num_rounds_continues_the_run(tmp_path):
  straight = str(tmp_path / 'straight')
  training.train_and_evaluate(tiny_config(num_rounds=3), straight)
  continued = str(tmp_path / 'continued')
  training.train_and_evaluate(tiny_config(num_rounds=2), continued)
  training.train_and_evaluate(tiny_config(num_rounds=3), continued)
  assert _metrics(continued) == _metrics(straight)
  assert rundir.read_json(os.path.join(continued, 'privacy.json'))['rounds'] == 3


@pytest.mark.slow
def test_changed_config_is_refused_for_an_existing_run(tmp_path):
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(tiny_config(num_rounds=1), workdir)
  before = open(os.path.join(workdir, 'config.json')).read()
  with pytest.raises(training.ConfigMismatchError, match=r'dp.clip: run has 0.2, command has 2.0'):
    training.train_and_evaluate(tiny_config(**{'dp.clip': 2.0}), workdir)
  assert open(os.path.join(workdir, 'config.json')).read() == before
  # A run recorded before the audit keys existed is the same run with the audit off.
  recorded = rundir.read_json(os.path.join(workdir, 'config.json'))
  del recorded['audit'], recorded['resolved']['canaries']
  rundir.write_json(os.path.join(workdir, 'config.json'), recorded)
  training.train_and_evaluate(tiny_config(num_rounds=1), workdir)  # nothing to do
  with pytest.raises(training.ConfigMismatchError,
                     match=r'audit.canaries: run has 0, command has 20'):
    training.train_and_evaluate(tiny_config(**{'num_rounds': 1, 'audit.canaries': 20,
                                               'dp.mechanism': 'gaussian_fixed'}),
                                workdir)


@pytest.mark.parametrize('overrides, message', [
    ({'clients_per_round': 500}, r'clients_per_round=500 is larger than the population'),
    ({'dp.clip': -1.0}, r'dp.clip must be a finite number > 0. Found -1.0'),
    ({'dp.noise_multiplier': 5.0}, r'dp.noise_multiplier=5 is too large for adaptive'),
    ({'dp.delta': 0.5}, r'dp.delta=0.5 must be below 1 / population size'),
    ({'num_rounds': 0}, r'num_rounds must be a positive integer. Found 0'),
    ({'data.label_skew': 2.0}, r'data.label_skew must be in \[0, 1\]. Found 2.0'),
    ({'dp.accountant': 'pld', 'sampling': 'fixed_size'},
     r'pld accountant cannot analyse fixed_size sampling'),
    ({'dp.max_epsilon': -1.0}, r'dp.max_epsilon must be > 0. Found -1.0'),
    ({'task': 'forecast'}, r"task must be one of churn, next_action. Found 'forecast'"),
    ({'dp.mechanism': 'tree'}, r'dp.mechanism=tree \(DP-FTRL\) is accounted for '
     r'sampling=shuffle or min_separation or available'),
    ({'sampling': 'min_separation', 'dp.mechanism': 'tree',
      'participation.min_separation': 8}, r'clients_per_round=20 must be at most '
     r'population // participation.min_separation = 120 // 8 = 15'),
    ({'participation.window_hours': 0.0},
     r'participation.window_hours must be in \(0, 24\]. Found 0.0'),
    ({'dp.secure_sum': True}, r'dp.secure_sum=True is supported for dp.mechanism in '
     r"gaussian_fixed, tree, banded, blt. Found 'gaussian_adaptive'"),
    ({'dp.mechanism': 'distributed'}, r'dp.mechanism=distributed \(distributed Skellam\) '
     r'is accounted for sampling=fixed_size with the rdp accountant only'),
    ({'dp.mechanism': 'distributed', 'sampling': 'fixed_size', 'dp.bits': 4},
     r'dp.bits=4 is too small for clients_per_round=20'),
    ({'clients.max_local_steps': 'uniform:9:3'}, r'LOW and HIGH must be integers'),
    ({'clients.dropout': 0.1, 'dp.mechanism': 'distributed', 'sampling': 'fixed_size'},
     r'clients.dropout > 0 is not supported with dp.mechanism=distributed'),
    ({'compression.bits': 8}, r'compression.bits > 0 is supported for dp.mechanism in '
     r"none, gaussian_fixed, tree, banded, blt. Found 'gaussian_adaptive': no analysis"),
    ({'compression.bits': 17, 'dp.mechanism': 'none'},
     r'compression.bits must be an integer in \[0, 16\] \(0: no compression\). Found 17'),
    ({'compression.bits': 8, 'dp.mechanism': 'gaussian_fixed', 'dp.secure_sum': True},
     r'cannot be combined with dp.secure_sum=True'),
])
def test_invalid_settings_fail_before_anything_is_written(tmp_path, overrides, message):
  workdir = tmp_path / 'run'
  with pytest.raises(training.InvalidSettingsError, match=message):
    training.train_and_evaluate(tiny_config(**overrides), str(workdir))
  assert not workdir.exists()


def test_small_adaptive_cohort_with_small_noise_is_accepted():
  # Adaptive clipping allows noise below 0.1 * cohort: 0.5 at a cohort of 8.
  config = tiny_config(clients_per_round=8, **{'dp.noise_multiplier': 0.5})
  run = training.resolve_config(config, population_size=100)
  assert run.resolved['resolved']['noise_multiplier'] == 0.5
  assert run.config.resolved.noise_multiplier == 0.5 and run.task.name == 'churn'
  assert run.dp.noise_multiplier == 0.5 and run.dp.population_size == 100
  with pytest.raises(AttributeError):  # read-only downstream
    run.config.dp.clip = 1.0


@pytest.mark.slow
def test_evaluation_scores_fixed_seeded_samples_of_held_out_users(tmp_path):
  from fl_analytics.export import tflite  # pylint: disable=g-import-not-at-top

  config = tiny_config(**{'evaluation.max_users': 4, 'evaluation.final_max_users': 6,
                          'evaluation.personalization_steps': 0})
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(config, workdir)
  result = rundir.read_json(os.path.join(workdir, 'evaluation.json'))
  data = tasks.get('churn').build_data(config)
  total = data.num_eval_users
  per_round, final = (len(data.eval_sample(n, seed=config.seed)) for n in (4, 6))
  assert result['held_out_users'] == {'total': total, 'per_round': per_round,
                                      'final': final}
  assert result['per_user']['users'] == final <= 6 < total
  # The per-round metrics are those of the 4 sampled users, under the final weights.
  sample = data.eval_sample(4, seed=config.seed)

  def examples(users):
    return np.concatenate([u[0] for u in users])

  np.testing.assert_array_equal(examples(sample),
                                examples(data.eval_sample(4, seed=config.seed)))
  assert examples(sample).shape != examples(data.eval_sample(4, seed=9)).shape or (
      not np.array_equal(examples(sample), examples(data.eval_sample(4, seed=9))))
  _, task, keras_model, _ = tflite.load_run(workdir)
  x, y = examples(sample), np.concatenate([u[1] for u in sample])
  last = _metrics(workdir)[-1]
  assert task.eval_metrics(keras_model(x, training=False).numpy(), y)['loss'] == (
      pytest.approx(float(last['eval_loss']), abs=1e-6))
  with pytest.raises(training.InvalidSettingsError, match='evaluation.max_users must be'):
    training.train_and_evaluate(tiny_config(**{'evaluation.max_users': -1}),
                                str(tmp_path / 'bad'))
