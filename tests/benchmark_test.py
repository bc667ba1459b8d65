"""The benchmark's parts run and report what they claim; no timing is asserted."""

import numpy as np
import pytest

from benchmarks import suite
from fl_analytics.engines import floor
from fl_analytics.data import features
from fl_analytics.data import synthetic

NUM_FEATURES = features.num_features(synthetic.EVENT_VOCAB)  # the default generator


def _floor(**kw):
  args = dict(num_features=NUM_FEATURES, hidden_units=8, seed=0,
              client_learning_rate=0.1, batch_size=4, local_epochs=1,
              server_learning_rate=1.0, server_momentum=0.9, noise_multiplier=1.0,
              clip=0.2, clients_per_round=3, adaptive=True)
  args.update(kw)
  return floor.PlainTFRound(**args)


def _clients(sizes, seed=0):
  rng = np.random.default_rng(seed)
  return [(rng.normal(size=(n, NUM_FEATURES)).astype(np.float32),
           (rng.random((n, 1)) < 0.3).astype(np.float32)) for n in sizes]


def test_floor_traces_once_for_clients_of_any_size_and_moves_model_and_clip():
  f = _floor()
  before = [w.numpy().copy() for w in f._weights]  # pylint: disable=protected-access
  clip = float(f._clip.numpy())  # pylint: disable=protected-access
  for sizes in ([3, 7, 12], [1, 30], [5]):
    f.run_round(_clients(sizes))
  assert f.trace_count == 1
  after = [w.numpy() for w in f._weights]  # pylint: disable=protected-access
  assert any(not np.allclose(a, b) for a, b in zip(before, after))
  assert float(f._clip.numpy()) != clip  # pylint: disable=protected-access


def test_floor_client_update_is_clipped_to_the_clip_norm():
  f = _floor(client_learning_rate=5.0, clip=1e-3)
  x, y = _clients([20])[0]
  clipped, below = f.client_update(x, y)
  norm = float(np.sqrt(sum(np.sum(np.square(c.numpy())) for c in clipped)))
  assert norm == pytest.approx(1e-3, rel=1e-4)
  assert float(below) == 0.0


def test_pipeline_round_seconds_reads_the_training_loop(monkeypatch):
  calls = []

  def fake_train(config, workdir, on_round=None):
    del on_round
    calls.append((config.clients_per_round, config.num_rounds, config.runtime.engine))
    from fl_analytics.core import rundir  # pylint: disable=g-import-not-at-top
    import os  # pylint: disable=g-import-not-at-top
    rundir.write_csv(os.path.join(workdir, rundir.METRICS_FILE), ('round', 'round_seconds'),
                     [{'round': r, 'round_seconds': s}
                      for r, s in enumerate([9.0, 9.0, 1.0, 3.0, 2.0], 1)])

  from fl_analytics.runs import training  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(training, 'train_and_evaluate', fake_train)
  # Warm-up rounds are dropped; the median of the rest is reported.
  assert suite.pipeline_round_seconds(7, rounds=3, warmup=2) == 2.0
  assert calls == [(7, 5, 'mapreduce')]


def test_memory_profile_refuses_too_few_rounds():
  with pytest.raises(ValueError, match='--memory_rounds must be > 50. Found 10'):
    suite.memory_profile(10)


def test_rows_table_shows_the_ratio():
  table = suite.rows_table([{'clients_per_round': 50, 'pipeline_round_s': 0.3,
                                 'floor_round_s': 0.1, 'ratio': 3.0}])
  assert '3.00' in table and '50' in table


def test_scale_table_and_the_arithmetic_bound():
  row = {'num_users': 1_000_000, 'clients_per_round': 1000, 'first_round_start_s': 14.2,
         'round_s': 1.5, 'ms_per_client': 1.5, 'peak_rss_mb': 800.0, 'users_made': 6000}
  table = suite.scale_table([row])
  assert '1000000' in table and '14.2' in table and '6000' in table
  config = suite.scale_config(10_000, 100, 3)
  # 6 FLOPs per weight and example (forward and backward), 577 weights of the MLP.
  assert suite.round_flops(config, 10.0, 100) == 6 * 577 * 10.0 * 100
  assert config.dp.delta < 1 / 1_000_000 and config.evaluation.max_users == 1000


def test_run_in_child_reports_the_childs_own_peak_memory(tmp_path):
  from fl_analytics.data import events  # pylint: disable=g-import-not-at-top
  from fl_analytics.data import synthetic  # pylint: disable=g-import-not-at-top

  path = str(tmp_path / 'events.csv')
  logs = synthetic.generate_population(num_users=5, seed=0, num_days=20)
  events.write_events(logs, path)
  result = suite.run_in_child('ingest_point', path)
  assert result['users'] == sum(1 for log in logs if len(log.events))
  assert result['events'] == sum(len(log.events) for log in logs)
  # Not this (TensorFlow-importing) process's size: ru_maxrss would carry it over exec.
  assert result['peak_rss_mb'] < suite.rss_mb() / 2
