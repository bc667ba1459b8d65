"""DP feature-usage analytics: the true counts, TFF's DP sum, the measured error, the CLI."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from fl_analytics.analytics import feature_usage
from fl_analytics.privacy import statement
from fl_analytics.core import rundir
from fl_analytics.data import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAY = synthetic.SECONDS_PER_DAY


def test_usage_vectors_mark_features_used_in_the_window_only():
  end = synthetic.ORIGIN_TIMESTAMP + 30 * DAY
  logs = [
      synthetic.UserLog('a', np.array([end - 8 * DAY, end - 2 * DAY, end - 1]),
                        np.array([1, 2, 2], np.int32)),
      synthetic.UserLog('b', np.array([end - 7 * DAY, end]), np.array([3, 4], np.int32)),
      synthetic.UserLog('c', np.zeros(0, np.int64), np.zeros(0, np.int32)),
  ]
  v = feature_usage.usage_vectors(logs, end_timestamp=end, window_days=7,
                                  vocabulary=synthetic.EVENT_VOCAB)
  assert v.shape == (3, len(synthetic.EVENT_VOCAB))
  assert np.flatnonzero(v[0]).tolist() == [2]  # day -8 is outside, twice counts once
  assert np.flatnonzero(v[1]).tolist() == [3]  # the window starts at end - 7 days
  assert not v[2].any()


@pytest.mark.slow
def test_noise_is_calibrated_for_one_release_and_matches_the_measured_error(tmp_path):
  rng = np.random.default_rng(0)
  vectors = (rng.random((60, len(synthetic.EVENT_VOCAB))) < 0.3).astype(np.float32)
  releases = feature_usage.run(vectors, epsilons=[1.0, 4.0], delta=1e-3, repeats=6,
                           secure_sum=True)
  for rel in releases:
    # One Gaussian mechanism at this epsilon, by dp_accounting's PLD accountant.
    assert statement.epsilon_spent(
        noise_multiplier=rel.noise_multiplier, clients_per_round=60, population_size=60,
        rounds=1, delta=1e-3, accountant='pld') == pytest.approx(rel.epsilon, rel=1e-2)
  summary = feature_usage.write_results(str(tmp_path), vectors.sum(axis=0), releases,
                                    delta=1e-3, num_users=60, secure_sum=True,
                                    window_days=7, vocabulary=synthetic.EVENT_VOCAB)
  rows = rundir.read_csv(os.path.join(tmp_path, feature_usage.RESULTS_FILE))
  assert len(rows) == 2 * 6 * len(synthetic.EVENT_VOCAB)
  for r in rows:
    assert float(r['error']) == pytest.approx(float(r['dp_value']) - float(r['true_value']))
  assert {float(r['true_value']) for r in rows if r['feature'] == 'play'} == {
      float(vectors[:, 1].sum())}
  for s in summary:
    # 60 noisy counts per epsilon: their RMSE is the stddev within a wide margin.
    assert 0.6 < s['rmse'] / s['noise_stddev'] < 1.5, s
    assert s['noise_stddev'] == pytest.approx(s['noise_multiplier'] * math.sqrt(10))
  assert summary[0]['rmse'] > summary[1]['rmse']
  privacy_statement = rundir.read_json(os.path.join(tmp_path, feature_usage.PRIVACY_FILE))
  assert 'simulates the secure sum' in privacy_statement['secure_aggregation']
  assert privacy_statement['unit_of_privacy'].startswith("one user's whole data")
  # The exact counts are committed beside the releases: the statement says so.
  assert [item['output'].split(':')[0] for item in privacy_statement['not_covered']] == [
      'analytics.csv']
  assert 'true_value' in privacy_statement['not_covered'][0]['output']


@pytest.mark.slow
def test_cli_writes_csv_and_plot_and_refuses_bad_settings_before_writing(tmp_path):
  workdir = tmp_path / 'out'
  base = [sys.executable, 'experiments/analytics.py', '--config=configs/feature_usage.py',
          f'--workdir={workdir}', '--config.data.num_users=80', '--config.data.num_days=30']
  bad = subprocess.run(base + ['--config.analytics.delta=0.5'], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and 'analytics.delta=0.5 must be in (0, 1 / number' in bad.stderr
  assert not workdir.exists()
  ok = subprocess.run(base + ['--config.analytics.epsilons=(1.0,)',
                              '--config.analytics.repeats=2'],
                      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert ok.returncode == 0, ok.stderr[-2000:]
  header = open(workdir / feature_usage.RESULTS_FILE).readline().strip().split(',')
  assert header[:1] + header[2:] == ['epsilon', 'feature', 'true_value', 'dp_value', 'error']
  assert os.path.getsize(workdir / 'figures' / 'analytics_error.png') > 1000
  assert 'measured RMSE' in ok.stdout


@pytest.mark.slow
@pytest.mark.parametrize('flags, message', [
    (['--workdir={file}'], 'is a file, not a directory; --workdir must be a directory'),
    (['--workdir=/proc/analytics'], 'is under a kernel file system'),
    (['--config.clients.opt_out=1.0'], 'clients.opt_out must be a number in [0, 1)'),
    (['--config.clients.opt_out=0.999'], 'No user is left to count'),
])
def test_cli_refuses_an_unusable_workdir_and_an_empty_population_in_one_line(
    tmp_path, flags, message):
  file = tmp_path / 'a_file'
  file.write_text('')
  workdir = tmp_path / 'out'
  result = subprocess.run(
      [sys.executable, 'experiments/analytics.py', '--config=configs/feature_usage.py',
       f'--workdir={workdir}', '--config.data.num_users=80',
       '--config.data.num_days=30'] + [f.format(file=file) for f in flags],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and message in last, result.stderr[-2000:]
  assert not workdir.exists()
