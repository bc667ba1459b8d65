"""The vectorized engine: TFF's round with the cohort trained as one computation."""

import copy
import os

import numpy as np
import pytest
import tensorflow_federated as tff

from fl_analytics import engines
from fl_analytics.tasks import models
from fl_analytics.engines import mrf_runner
from fl_analytics.engines import vectorized
from fl_analytics.core import rundir
from fl_analytics import tasks
from fl_analytics.runs import training
from fl_analytics.privacy import canaries
from fl_analytics.privacy import mechanisms
from tests.helpers import VARIANTS
from tests.helpers import task_config
from tests.helpers import tiny_config


def _runners(config, **options):
  """The run's data, TFF's round client by client (`mapreduce`, one group) and the
  vectorized runner of the same process (`options`: `VectorizedRunner`'s). Both draw
  their client-side random numbers as a fixed sequence (`pin_draws`), so that TFF's
  stochastic rounding and local noise are the same draws in both."""
  task = tasks.get(config.task)
  data = task.build_data(config)
  settings = training.resolve_config(
      config, population_size=data.population_size + config.audit.canaries).dp
  process = training.build_process(config, task, settings)
  dataset_fn = training.client_datasets(config)
  reference = mrf_runner.MapReduceRunner(process, dataset_fn, groups=1, parallel=1,
                                         pin_draws=True)
  fast = engines.VectorizedEngine.make_runner(
      process, dataset_fn, config, groups=1, **{'pin_draws': True, 'lanes': 1, **options})
  return task, data, reference, fast


def _accumulators(config, task, data, reference, runners, clients):
  """The accumulator and the secure sums' totals after `clients` from the initial
  model: TFF's (reference) and each of `runners`'."""
  state = reference.set_model_weights(reference.initialize(), tff.learning.models.ModelWeights(
      *models.initial_weights(task.build_model(config))))
  feed = dict(zip(reference._state_feeds, mrf_runner._flatten_value(state)))  # pylint: disable=protected-access
  broadcast, zero, secure = reference._server.run(  # pylint: disable=protected-access
      [reference._broadcast, reference._zero, reference._secure_params], feed)  # pylint: disable=protected-access
  return [r._accumulate_clients(broadcast, zero, secure, clients)  # pylint: disable=protected-access
          for r in (reference, *runners)]


def _cohort(data, config, n=12):
  """Clients where padding and masking could go wrong: a capped client and one without
  examples, besides ordinary ones (and the config's canaries, if any). In the order
  the engine takes them (by their steps, most first), so that pinned draws
  (`_runners`) come to the same client in both engines."""
  clients = [(*data.train_examples(i), -1) for i in range(n)]
  clients[3] = clients[3][:2] + (1,)
  clients.append((data.empty_x, np.zeros((0, 1), clients[0][1].dtype), -1))
  for i in range(config.audit.canaries):
    clients.insert(2 * i + 1, (*canaries.client_arrays(data.empty_x, i), -1))
  steps = [0 if len(y) and y.min() < 0 else min(-(-len(y) // config.client.batch_size)
                                                * config.client.local_epochs,
                                                cap if cap >= 0 else 10**9)
           for _, y, cap in clients]
  return [clients[i] for i in sorted(range(len(clients)), key=lambda i: -steps[i])]


def _names(runner):
  return [name for name, _ in runner._layout]  # pylint: disable=protected-access


def _assert_same(names, expected, got):
  """The accumulators' leaves to float tolerance, the secure sums' totals to the
  relative tolerance of their quantization; something in them moved (a check that
  passes on zeros would prove nothing)."""
  (acc_a, secure_a), (acc_b, secure_b) = expected, got
  for name, a, b in zip(names, acc_a, acc_b):
    np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6, err_msg=name)
  for part_a, part_b in zip(secure_a, secure_b):
    for a, b in zip(part_a, part_b):
      np.testing.assert_allclose(np.asarray(b, float), np.asarray(a, float), rtol=1e-6,
                                 atol=2, err_msg='secure sum')
  moved = [np.abs(np.asarray(a, float)).max() for n, a in zip(names, acc_a)
           if n.startswith(('delta', vectorized.GRAPH))]
  moved += [np.abs(np.asarray(a, float)).max() for part in secure_a for a in part]
  assert max(moved) > 1e-3


# Every mechanism, on its first sampling scheme.
_MECHANISMS = tuple(mechanisms.REGISTRY)
_TASKS = [pytest.param(t, v, id=f'{t}-{v}') for t in tasks.names()
          for v in ('default', *VARIANTS.get(t, {}))]


@pytest.mark.slow
@pytest.mark.parametrize('mechanism', _MECHANISMS)
@pytest.mark.parametrize('task, variant', _TASKS)
def test_cohort_accumulator_equals_tffs_client_work_client_by_client(task, variant, mechanism):
  # Two local epochs (batches run across the epoch boundary), a capped client and a
  # client without examples.
  config = task_config(task, variant, **{
      'dp.mechanism': mechanism, 'sampling': mechanisms.get(mechanism).samplings[0],
      'client.local_epochs': 2, 'client.learning_rate': 0.5})
  task_, data, reference, fast = _runners(config)
  expected, got = _accumulators(config, task_, data, reference, [fast],
                                _cohort(data, config))
  names = _names(fast)
  assert {'num_batches', 'loss_total'} <= set(names)
  # Clipping (fixed or adaptive) is summed in the stacked computation; the rest of the
  # client-side aggregation runs as TFF's graph.
  assert fast.client_path == ('graph' if mechanism == 'distributed' else 'summed')
  assert ('below_estimate' in names) == (mechanism == 'gaussian_adaptive')
  _assert_same(names, expected, got)


_OPTIONS = [(m, option) for m in _MECHANISMS for option, allowed in (
    ('compression.bits', mechanisms.get(m).compression),
    ('dp.secure_sum', mechanisms.get(m).secure_sum)) if allowed]


@pytest.mark.parametrize('mechanism, option', [
    pytest.param(m, o, marks=[] if k == 0 else pytest.mark.slow, id=f'{m}-{o}')
    for k, (m, o) in enumerate(_OPTIONS)])
def test_compression_and_secure_sums_are_tffs_client_graph_draw_for_draw(mechanism, option):
  config = tiny_config(**{'dp.mechanism': mechanism, option: 8 if option.startswith(
      'compression') else True, 'compression.threshold': 0, 'client.learning_rate': 0.5,
                          'sampling': mechanisms.get(mechanism).samplings[0]})
  task, data, reference, fast = _runners(config)
  assert fast.client_path == 'graph'
  expected, got = _accumulators(config, task, data, reference, [fast],
                                _cohort(data, config))
  _assert_same(_names(fast), expected, got)


@pytest.mark.parametrize('mechanism', ['gaussian_fixed', 'gaussian_adaptive',
                                       'distributed'])
def test_canaries_updates_are_their_clipped_directions_as_in_tffs_round(mechanism):
  config = tiny_config(**{'dp.mechanism': mechanism, 'audit.canaries': 20,
                          'dp.clip': 0.05, 'sampling': mechanisms.get(mechanism).samplings[0]})
  task, data, reference, fast = _runners(config)
  clients = _cohort(data, config, n=4)
  expected, got = _accumulators(config, task, data, reference, [fast], clients)
  names = _names(fast)
  _assert_same(names, expected, got)
  # The canaries are in the sum: without them it differs by far more than tolerance.
  _, without = _accumulators(config, task, data, reference, [fast],
                             [c for c in clients if not len(c[1]) or c[1].min() >= 0])
  flat = lambda r: np.concatenate([np.ravel(np.asarray(v, float)) for v in r[0]] + [
      np.ravel(np.asarray(v, float)) for part in r[1] for v in part])
  assert np.abs(flat(without) - flat(got)).max() > 1e-3


def test_lanes_of_the_aggregation_graph_give_the_same_sums():
  # A deterministic client graph (the secure sum's quantization), in two lanes.
  config = tiny_config(**{'dp.mechanism': 'gaussian_fixed', 'dp.secure_sum': True})
  task, data, reference, fast = _runners(config, lanes=2)
  expected, got = _accumulators(config, task, data, reference, [fast],
                                _cohort(data, config))
  _assert_same(_names(fast), expected, got)


@pytest.mark.parametrize('task, variant', [
    ('churn', 'default'), pytest.param('next_action', 'gru', marks=pytest.mark.slow)])
def test_chunking_leaves_the_accumulator_unchanged(task, variant):
  config = task_config(task, variant, **{'dp.mechanism': 'gaussian_adaptive'})
  task_, data, reference, whole = _runners(config)
  clients = _cohort(data, config)
  streams, _ = whole._streams(clients)  # pylint: disable=protected-access
  per_mb = whole.chunk_size(streams) / whole._memory_mb  # pylint: disable=protected-access
  runners = []
  for memory_mb in (1e-6, 3.5 / per_mb):  # one client per chunk; three per chunk
    runner = copy.copy(whole)
    runner._memory_mb = memory_mb  # pylint: disable=protected-access
    runners.append(runner)
  sizes = [r.chunk_size(streams) for r in runners]
  assert sizes[0] == 1 and 1 < sizes[1] < len(clients), sizes
  expected, *got = _accumulators(config, task_, data, reference, [whole, *runners], clients)
  names = _names(whole)
  for g in got:
    _assert_same(names, expected, g)


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


@pytest.mark.slow
def test_a_resumed_run_keeps_its_engine_and_the_summary_names_it(tmp_path):
  from fl_analytics.reporting import report  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path / 'run')
  config = tiny_config(**{'dp.mechanism': 'gaussian_fixed', 'runtime.engine': 'mapreduce',
                          'num_rounds': 1})
  training.train_and_evaluate(config, workdir)
  # Resumed under the default (auto), which alone would choose vectorized.
  resumed = tiny_config(**{'dp.mechanism': 'gaussian_fixed', 'num_rounds': 2})
  assert engines.resolve(resumed)[0] == 'vectorized'
  training.train_and_evaluate(resumed, workdir)
  resolved = rundir.read_json(os.path.join(workdir, rundir.CONFIG_FILE))['resolved']
  assert resolved['engine'] == 'mapreduce' and 'kept mapreduce' in resolved['engine_reason']
  assert 'Engine: mapreduce (runtime.engine=auto kept mapreduce' in report.run_summary(workdir)


def test_a_model_it_cannot_stack_is_refused_by_name_and_auto_chooses_mapreduce(
    monkeypatch):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  task = tasks.get('churn')
  build = task.build_model

  def with_batch_norm(config):  # non-trainable variables (the moving statistics)
    model = build(config)
    return tf.keras.Sequential([tf.keras.Input(model.input_shape[1:]),
                                tf.keras.layers.BatchNormalization(), model])

  monkeypatch.setattr(type(task), 'build_model', lambda self, config: with_batch_norm(config))
  config = tiny_config(**{'runtime.engine': 'vectorized'})
  with pytest.raises(ValueError, match="runtime.engine=vectorized does not run "
                                       "task=churn's model .*non-trainable variables"):
    engines.check_config(config)
  name, why = engines.resolve(tiny_config())
  assert name == 'mapreduce' and 'non-trainable variables' in why
