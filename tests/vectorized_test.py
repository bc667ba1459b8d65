"""The vectorized engine: TFF's round with the cohort trained as one computation."""

import os

import numpy as np
import pytest
import tensorflow_federated as tff

from fl_analytics import engines
from fl_analytics.tasks import models
from fl_analytics.engines import mrf_runner
from fl_analytics.core import rundir
from fl_analytics import tasks
from fl_analytics.runs import training
from fl_analytics.engines import vectorized
from tests.helpers import tiny_config


@pytest.mark.slow
@pytest.mark.parametrize('mechanism', ['none', 'gaussian_fixed', 'gaussian_adaptive'])
def test_cohort_accumulator_equals_tffs_client_work_client_by_client(mechanism):
  # Two local epochs (batches run across the epoch boundary), a capped client and a
  # client without examples: the cases where padding and masking could go wrong.
  config = tiny_config(**{'dp.mechanism': mechanism, 'client.local_epochs': 2,
                          'client.learning_rate': 0.5})
  task = tasks.get('churn')
  data = task.build_data(config)
  settings = training.resolve_config(config, population_size=data.population_size).dp
  process = training.build_process(config, task, settings)
  dataset_fn = training.client_datasets(config)
  reference = mrf_runner.MapReduceRunner(process, dataset_fn, groups=1, parallel=1)
  fast = vectorized.VectorizedRunner(
      process, dataset_fn, learning_rate=config.client.learning_rate,
      batch_size=config.client.batch_size, local_epochs=2,
      clip=None if mechanism == 'none' else config.dp.clip)
  clients = [(*data.train_examples(i), -1) for i in range(12)]
  clients[3] = clients[3][:2] + (1,)
  clients.append((data.empty_x, np.zeros((0, 1), np.float32), -1))
  state = reference.set_model_weights(reference.initialize(), tff.learning.models.ModelWeights(
      *models.initial_weights(task.build_model(config))))
  feed = dict(zip(reference._state_feeds, mrf_runner._flatten_value(state)))  # pylint: disable=protected-access
  broadcast, zero, secure = reference._server.run(  # pylint: disable=protected-access
      [reference._broadcast, reference._zero, reference._secure_params], feed)  # pylint: disable=protected-access
  expected, _ = reference._accumulate_clients(broadcast, zero, secure, clients)  # pylint: disable=protected-access
  got, _ = fast._accumulate_clients(broadcast, zero, secure, clients)  # pylint: disable=protected-access
  names = [name for name, _ in fast._layout]  # pylint: disable=protected-access
  assert {'num_batches', 'loss_total', 'delta_0', 'delta_3'} <= set(names)
  assert ('below_estimate' in names) == (mechanism == 'gaussian_adaptive')
  for name, a, b in zip(names, expected, got):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=name)
  # The deltas moved (a check that passes on zeros would prove nothing).
  assert np.abs(np.asarray(expected[names.index('delta_0')])).max() > 0.01


@pytest.mark.slow
@pytest.mark.parametrize('mechanism', ['gaussian_fixed', 'gaussian_adaptive'])
def test_a_run_on_the_vectorized_engine_matches_the_mapreduce_engine(tmp_path, mechanism):
  rows = {}
  for engine in ('mapreduce', 'vectorized'):
    config = tiny_config(**{'dp.mechanism': mechanism, 'runtime.engine': engine,
                            'clients.max_local_steps': 'uniform:1:2'})
    training.train_and_evaluate(config, str(tmp_path / engine))
    rows[engine] = rundir.read_metrics(os.path.join(tmp_path, engine, rundir.METRICS_FILE))
  for a, b in zip(rows['mapreduce'], rows['vectorized']):
    assert a['epsilon'] == b['epsilon'] and a['cohort_size'] == b['cohort_size']
    for key in ('train_loss', 'train_accuracy', 'eval_loss', 'eval_auc', 'clip'):
      if a[key]:
        assert float(b[key]) == pytest.approx(float(a[key]), abs=1e-5), key


@pytest.mark.parametrize('overrides, named', [
    ({'dp.mechanism': 'tree', 'sampling': 'shuffle'}, 'dp.mechanism=tree'),
    ({'task': 'next_action'}, 'task=next_action'),
    ({'dp.mechanism': 'gaussian_fixed', 'compression.bits': 8}, 'compression.bits=8'),
])
def test_what_it_does_not_run_is_refused_by_name(overrides, named):
  config = tiny_config(**{'runtime.engine': 'vectorized', **overrides})
  with pytest.raises(ValueError, match=f'runtime.engine=vectorized does not run .*{named}'):
    engines.check_config(config)
