"""Canary clients in training (`fl_analytics.privacy.canaries`) and the audit of real runs.

The audit must catch a broken mechanism, so these runs are sized for it: K = 100
canaries among 115 users, 100 clients per round (each canary is inserted about 2.4
times in 5 rounds), and a client learning rate of 0.001, so that the users' updates are
small next to the clip and the round's delta is the canaries and the noise. With the
default learning rate the users' aligned updates dominate the delta of this
577-parameter model and hide the canaries (docs/audit.md).
"""

import dataclasses
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from fl_analytics.privacy import aggregators
from fl_analytics.privacy import audit
from fl_analytics.privacy import canaries
from fl_analytics import engines
from fl_analytics.tasks import models
from fl_analytics.core import rundir
from fl_analytics import tasks
from fl_analytics.runs import training
from tests.training_test import crash_before_checkpoint
from tests.helpers import REPO
from tests.helpers import tiny_config

K = 100


def _audit_config(noise_multiplier: float, **overrides):
  return tiny_config(**{
      'dp.mechanism': 'gaussian_fixed', 'dp.noise_multiplier': noise_multiplier,
      'num_rounds': 5, 'eval_every': 5, 'clients_per_round': 100,
      'client.learning_rate': 0.001, 'evaluation.personalization_steps': 0,
      'audit.canaries': K, **overrides})


def _break_noise(monkeypatch, factor: float = 10.0):
  """Test-only fault: the aggregator adds `factor` times less noise than the settings
  (and so the accountant) say."""
  build = aggregators.build

  def broken(settings, **kwargs):
    return build(dataclasses.replace(
        settings, noise_multiplier=settings.noise_multiplier / factor), **kwargs)

  monkeypatch.setattr(aggregators, 'build', broken)


def _audit(workdir):
  """audit.json of a run; its numbers are printed (`pytest -s` shows them)."""
  a = rundir.read_json(os.path.join(workdir, rundir.AUDIT_FILE))
  f, e = a['final_model'], a['all_iterates']
  print(f"\n{os.path.basename(workdir)}: claimed {a['claimed_epsilon']:.3g}; final model "
        f"estimate {f['epsilon_estimate']} lower bound {f['epsilon_lower_bound']:.3g}; "
        f"all iterates estimate {e['epsilon_estimate']} lower bound "
        f"{e['epsilon_lower_bound']:.3g}; {a['verdict']}")
  return a


@pytest.mark.slow
def test_canary_process_is_fed_avg_for_users_and_sends_the_direction_at_the_clip():
  config = _audit_config(1e-3, **{'server.momentum': 0.0, 'audit.canaries': 20})
  task = tasks.get('churn')
  data = task.build_data(config)
  settings = training.resolve_config(
      config, population_size=data.population_size + 20).dp
  plain = training.build_process(tiny_config(**{
      'dp.mechanism': 'gaussian_fixed', 'dp.noise_multiplier': 1e-3,
      'server.momentum': 0.0, 'clients_per_round': 100,
      'client.learning_rate': 0.001}), task, settings)
  audited = training.build_process(config, task, settings)
  users = [engines.Client(*data.train_examples(i)) for i in range(3)]
  weights = tf.nest.flatten(models.initial_weights(task.build_model(config)))

  def round_of(process, clients):
    with engines.build('mapreduce', process, training.client_datasets(config)) as e:
      state = e.set_model_weights(e.initialize(), tff_weights(task, config))
      new, metrics = e.next(state, clients)
      return e.get_model_weights(new).trainable, metrics['client_work']['train']

  def tff_weights(task, config):
    import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
    return tff.learning.models.ModelWeights(
        *models.initial_weights(task.build_model(config)))

  # Users only: the same round as build_unweighted_fed_avg's.
  (w_plain, m_plain), (w_audit, m_audit) = (round_of(p, users) for p in (plain, audited))
  for a, b in zip(w_plain, w_audit):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert m_plain == m_audit

  # One canary (id 7): the model moves by its direction, at the clip norm over the
  # expected cohort (the DP mean), and it adds nothing to the training metrics.
  new, train = round_of(audited, [engines.Client(*canaries.client_arrays(
      data.empty_x, 7))])
  delta = canaries.flatten(weights[:len(new)]) - canaries.flatten(new)
  direction = canaries.directions([7], len(delta), seed=config.seed)[0]
  assert float(delta @ direction) / np.linalg.norm(delta) > 0.999
  assert np.linalg.norm(delta) == pytest.approx(config.dp.clip / 100, rel=1e-2)
  assert train['num_examples'] == 0


@pytest.mark.slow
def test_without_noise_the_canaries_are_plainly_visible(tmp_path):
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(_audit_config(1e-3), workdir)
  report = _audit(workdir)
  final = report['final_model']
  assert final['epsilon_estimate'] > 10 and final['epsilon_lower_bound'] > 3
  assert report['all_iterates']['epsilon_lower_bound'] > 1
  assert report['first_insertion']['epsilon_lower_bound'] > 3
  assert report['canaries'] == K and report['dimension'] == 577

  # Canaries are sampled like users but never counted as users.
  config = _audit_config(1e-3)
  data = tasks.get('churn').build_data(config)
  privacy = rundir.read_json(os.path.join(workdir, rundir.PRIVACY_FILE))
  assert privacy['population_size'] == data.population_size + K
  assert privacy['audit_canaries'] == K
  inserted = 0
  for row in rundir.read_metrics(os.path.join(workdir, rundir.METRICS_FILE)):
    cohort = training.sample_round(config, population_size=data.population_size + K,
                                   seed=config.seed, round_num=int(row['round']))
    assert int(row['cohort_size']) == np.sum(cohort.sampled < data.population_size)
    inserted += np.sum(cohort.sampled >= data.population_size)
  assert report['canary_times_sampled']['mean'] * K == pytest.approx(inserted)
  attack = report['membership_inference']
  assert 0 <= attack['auc'] <= 1 and attack['members'] == attack['non_members'] > 0


@pytest.mark.slow
def test_correct_dp_is_consistent_with_its_claim_and_survives_a_crash(tmp_path,
                                                                       monkeypatch):
  config = _audit_config(3.0)
  straight = str(tmp_path / 'straight')
  training.train_and_evaluate(config, straight)
  report = _audit(straight)
  assert report['verdict'] == 'consistent with claim' and not report['flagged_by']
  for variant in ('final_model', 'all_iterates'):
    assert report[variant]['epsilon_lower_bound'] <= report['claimed_epsilon']
  # Held to one round of z = 3 without amplification (RDP: above its exact epsilon).
  exact = audit.gdp_epsilon(1 / 3, report['delta'])
  assert exact <= report['first_insertion_claim'] <= 1.15 * exact
  assert (report['first_insertion']['epsilon_lower_bound']
          <= report['first_insertion_claim'])

  # Crash after round 3's metrics, before its checkpoint; the same command resumes:
  # the canaries' statistics come back from the checkpoint of round 2.
  crashed = str(tmp_path / 'crashed')
  crash_before_checkpoint(monkeypatch, config, crashed, round_num=3)
  assert rundir.incomplete_reasons(crashed, 5)
  training.train_and_evaluate(config, crashed)
  assert _audit(crashed) == report


@pytest.mark.slow
def test_noise_ten_times_too_small_is_flagged(tmp_path, monkeypatch, caplog):
  _break_noise(monkeypatch)
  workdir = str(tmp_path / 'run')
  with caplog.at_level(logging.WARNING):
    training.train_and_evaluate(_audit_config(3.0), workdir)
  report = _audit(workdir)
  assert report['verdict'] == 'estimate exceeds claim'
  assert 'final_model' in report['flagged_by']
  assert report['final_model']['epsilon_lower_bound'] > report['claimed_epsilon']
  assert any('estimate exceeds the claim' in r.getMessage() for r in caplog.records)
  # A run with canaries is finished only with its audit.
  assert not rundir.incomplete_reasons(workdir, 5)
  os.unlink(os.path.join(workdir, rundir.AUDIT_FILE))
  assert 'audit.json' in ' '.join(rundir.incomplete_reasons(workdir, 5))


def test_each_canary_is_scored_on_the_delta_of_its_first_insertion():
  """Made-up weights: a canary's first-insertion cosine is the one of the round it was
  first sampled in, later rounds leave it, a canary never sampled has none, and a
  checkpoint's leaves give it back."""
  dim, k = 50, 4
  tracker = canaries.Tracker(canaries=k, unseen=3, initial_weights=[np.zeros(dim)],
                             seed=0)
  directions = canaries.directions(range(k + 3), dim, seed=0)
  weights = np.zeros(dim)
  deltas = np.random.default_rng(1).standard_normal((3, dim))
  for delta, sampled in zip(deltas, ([0, 1], [1, 2], [0])):
    tracker.record_round([weights], [weights - delta], sampled)
    weights = weights - delta
  cos = lambda i, d: float(directions[i] @ d / np.linalg.norm(d))
  expected = [cos(0, deltas[0]), cos(1, deltas[0]), cos(2, deltas[1])]
  np.testing.assert_allclose(tracker.first_cosines[:3], expected, rtol=1e-5)
  assert np.isnan(tracker.first_cosines[3])  # never sampled
  np.testing.assert_allclose(tracker.first_cosines[k:],
                             [cos(i, deltas[0]) for i in range(k, k + 3)], rtol=1e-5)
  assert list(tracker.times_sampled) == [2, 2, 1, 0]
  fresh = canaries.Tracker(canaries=k, unseen=3, initial_weights=[np.zeros(dim)], seed=0)
  fresh.restore(tracker.leaves())
  np.testing.assert_array_equal(fresh.first_cosines, tracker.first_cosines)


@pytest.mark.parametrize('overrides, message', [
    ({'dp.mechanism': 'none'}, 'dp.mechanism=none .* does not clip'),
    ({'audit.canaries': 5}, 'at least 20'),
    ({'audit.unseen_canaries': 3}, 'at least 20'),
    ({'audit.canaries': -1}, r'audit.canaries must be an integer >= 0'),
    ({'audit.alpha': 1.5}, r'audit.alpha must be in \(0, 1\)'),
])
def test_audit_settings_are_refused_by_name(overrides, message):
  with pytest.raises(ValueError, match=message):
    training.check_config(_audit_config(1.0, **overrides))


@pytest.mark.slow
@pytest.mark.parametrize('factor, verdict', [(1.0, 'consistent with claim'),
                                             (10.0, 'estimate exceeds claim')])
def test_blt_audit_is_consistent_with_its_claim_and_flags_ten_times_less_noise(
    tmp_path, monkeypatch, factor, verdict):
  """BLT-DP-FTRL on (k, b)-participation (every round allowed: b = 1, k = 5): its
  correlated noise hides the canaries as its one Gaussian mechanism claims, and the
  same noise divided by ten does not."""
  if factor != 1.0:
    _break_noise(monkeypatch, factor)
  workdir = str(tmp_path / 'run')
  training.train_and_evaluate(_audit_config(
      3.0, **{'dp.mechanism': 'blt', 'sampling': 'min_separation'}), workdir)
  report = _audit(workdir)
  assert report['verdict'] == verdict


POWER = os.path.join(REPO, 'results', 'audit_power')


def _power_runs():
  """(config.json, audit.json) of every committed `make audit-power` run."""
  runs = []
  for task in ('churn', 'next_action'):
    for name in sorted(os.listdir(os.path.join(POWER, task))):
      audit_path = os.path.join(POWER, task, name, rundir.AUDIT_FILE)
      if os.path.exists(audit_path):
        runs.append((rundir.read_json(os.path.join(POWER, task, name, rundir.CONFIG_FILE)),
                     rundir.read_json(audit_path)))
  return runs


def test_the_committed_canary_audit_has_power_on_the_larger_models():
  """Issue 29's target: without noise at the default learning rate, the final-model
  lower bound reaches 4 on the models larger than churn's; every DP run is consistent
  with its claims, the first-insertion statistic with one round's."""
  runs = _power_runs()
  assert sorted({a['dimension'] for _, a in runs}) == [577, 4314, 213354]
  assert len(runs) == 9
  for config, a in runs:
    assert a['canaries'] == 1000 and a['verdict'] == 'consistent with claim', a
    no_noise = config['dp']['target_epsilon'] is None
    assert no_noise == (config['dp']['noise_multiplier'] == 0.001)
    if no_noise and a['dimension'] > 577:
      assert a['final_model']['epsilon_lower_bound'] >= 4, a
    if not no_noise:
      assert a['first_insertion']['epsilon_lower_bound'] <= a['first_insertion_claim']


def test_the_power_table_and_figure_come_from_the_committed_runs(tmp_path):
  from fl_analytics.reporting import plots  # pylint: disable=g-import-not-at-top

  rows = plots.audit_power_rows([os.path.join(POWER, t) for t in ('churn', 'next_action')])
  committed = rundir.read_csv(os.path.join(POWER, 'power.csv'))
  assert len(rows) == len(committed) == 9
  for row, line in zip(rows, committed):
    assert int(line['parameters']) == row['parameters'] and line['setting'] == row['setting']
    assert rundir.to_float(line['final_model_lower_bound']) == pytest.approx(
        row['final_model_lower_bound'], rel=1e-6)
  paths = plots.audit_power(rows, str(tmp_path))
  assert all(os.path.getsize(p) > 0 for p in paths)
