"""The SecAgg+ protocol as a run's secure sum (`secure_aggregation.sum=protocol`): the
same sums as the simulated secure sum, bit for bit, for every mechanism that has one."""

import numpy as np
import pytest
import tensorflow_federated as tff

from fl_analytics import engines
from fl_analytics import tasks
from fl_analytics.core import rundir
from fl_analytics.engines import mrf_runner
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import secagg
from fl_analytics.runs import training
from fl_analytics.tasks import models
from tests import training_test
from tests.helpers import tiny_config

# Every mechanism with a secure sum: dp.secure_sum=True, or its own (distributed).
_SECURE = [(m, {'dp.secure_sum': True} if mechanisms.get(m).secure_sum else {})
           for m in mechanisms.REGISTRY
           if mechanisms.get(m).secure_sum or mechanisms.get(m).secure_aggregation]
PROTOCOL = {'secure_aggregation.sum': 'protocol', 'secure_aggregation.num_shares': 5}


def test_every_mechanism_with_a_secure_sum_is_covered():
  assert {m for m, _ in _SECURE} >= {'gaussian_fixed', 'tree', 'distributed'}


@pytest.mark.slow  # builds a TFF process per mechanism; tests/secagg_test.py is fast
@pytest.mark.parametrize('mechanism, option', _SECURE, ids=[m for m, _ in _SECURE])
def test_the_protocol_sums_the_round_inputs_as_the_simulated_sum_bit_for_bit(
    mechanism, option):
  config = tiny_config(**{'dp.mechanism': mechanism, **option, **PROTOCOL,
                          'sampling': mechanisms.get(mechanism).samplings[0]})
  task = tasks.get(config.task)
  data = task.build_data(config)
  settings = training.resolve_config(config, population_size=data.population_size).dp
  process = training.build_process(config, task, settings)
  runner = mrf_runner.MapReduceRunner(process, training.client_datasets(config), groups=2,
                                      parallel=1, secure_protocol=secagg.Parameters())
  try:
    state = runner.set_model_weights(runner.initialize(), tff.learning.models.ModelWeights(
        *models.initial_weights(task.build_model(config))))
    feed = dict(zip(runner._state_feeds, mrf_runner._flatten_value(state)))  # pylint: disable=protected-access
    broadcast, zero, params = runner._server.run(  # pylint: disable=protected-access
        [runner._broadcast, runner._zero, runner._secure_params], feed)  # pylint: disable=protected-access
    clients = [(*data.train_examples(i), -1) for i in range(9)]
    _, inputs = runner._accumulate_clients(broadcast, zero, params, clients)  # pylint: disable=protected-access
  finally:
    runner.close()
  assert isinstance(inputs, mrf_runner.PerClient) and len(inputs) == 9
  totals = mrf_runner.zero_secure(params)
  for client in inputs:
    mrf_runner.add_secure(totals, client)
  # Devices without input drop before their keys (1) or after their shares (2); two
  # with inputs drop after sending them (their inputs count). Neighbourhoods of 9 of
  # the 11 with keys, t = 5: every one keeps 5 that answer.
  for dropouts in (secagg.Dropouts(), secagg.Dropouts(1, 2, (0, 4))):
    simulated = totals[0] + totals[1] + [t % np.asarray(m, np.int64)
                                         for t, m in zip(totals[2], params[2])]
    got, costs = mrf_runner.protocol_sum(inputs, params, secagg.Parameters(), dropouts)
    assert costs.survivors == 9
    assert len(costs.sent) == 9 + dropouts.before_keys + dropouts.after_shares
    assert len(got) == len(simulated) > 0
    for a, b in zip(simulated, got):
      assert a.shape == b.shape and np.array_equal(a, b)
    assert max(np.abs(a).max() for a in simulated) > 0  # the sums are not all zero


@pytest.mark.slow
def test_a_run_over_the_protocol_with_dropouts_equals_the_simulated_run(tmp_path):
  runs = {}
  for how in ('simulated', 'protocol'):
    workdir = str(tmp_path / how)
    training.train_and_evaluate(tiny_config(**{
        'dp.mechanism': 'gaussian_fixed', 'dp.secure_sum': True, 'clients.dropout': 0.3,
        'secure_aggregation.sum': how, 'secure_aggregation.dropout_after_input': 0.2,
        'runtime.engine': 'vectorized'}), workdir)
    runs[how] = (training_test._metrics(workdir),  # pylint: disable=protected-access
                 rundir.load_checkpoint(workdir, 2), rundir.read_json(f'{workdir}/privacy.json'))
  (rows_a, state_a, privacy_a), (rows_b, state_b, privacy_b) = runs.values()
  assert rows_a == rows_b and any(int(r['reported']) < int(r['cohort_size']) for r in rows_a)
  assert len(state_a) == len(state_b) and all(
      np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(state_a, state_b))
  assert 'simulates the secure sum' in privacy_a['secure_aggregation']
  assert 'SecAgg+ protocol' in privacy_b['secure_aggregation']
  assert 'honest-but-curious server' in privacy_b['secure_aggregation']


@pytest.mark.parametrize('overrides, message', [
    ({'dp.mechanism': 'gaussian_fixed'}, r'secure_aggregation.sum=protocol runs the '
     r"round's secure sums, and this run has none"),
    ({'dp.mechanism': 'gaussian_fixed', 'dp.secure_sum': True, 'runtime.engine': 'cpp'},
     r'runs with runtime.engine=mapreduce, vectorized or auto.*Found runtime.engine=cpp'),
    ({'dp.mechanism': 'gaussian_fixed', 'dp.secure_sum': True,
      'runtime.ray_address': 'auto'}, r'without runtime.ray_address.*ray_address set'),
    ({'secure_aggregation.sum': 'real'}, r'secure_aggregation.sum must be one of '
     r"simulated, protocol. Found 'real'"),
    ({'secure_aggregation.num_shares': 4}, r'num_shares must be 0 \(automatic\) or an '
     'odd integer'),
    ({'secure_aggregation.dropout_after_input': 1.0}, r'dropout_after_input must be a '
     r'number in \[0, 1\)'),
])
def test_bad_secure_aggregation_settings_are_refused_by_name(overrides, message):
  with pytest.raises(ValueError, match=message):
    training.check_config(tiny_config(**{**PROTOCOL, **overrides}))


@pytest.mark.slow
def test_distributed_rounds_over_the_protocol_equal_the_simulated_rounds_bit_for_bit():
  # The vectorized engine's runners, their client-side draws (Skellam noise,
  # stochastic rounding) pinned to the same sequence; a round without, then one with
  # dropouts at each stage of the protocol (distributed refuses clients.dropout: a
  # device's noise share must arrive; the devices dropping here send no input). Both
  # start from one state (its rotation seed is drawn from the clock at initialize).
  runs, start = {}, None
  for how in ('simulated', 'protocol'):
    config = tiny_config(**{'dp.mechanism': 'distributed', 'sampling': 'fixed_size',
                            'secure_aggregation.sum': how})
    task = tasks.get(config.task)
    data = task.build_data(config)
    settings = training.resolve_config(config, population_size=data.population_size).dp
    runner = engines.VectorizedEngine.make_runner(
        training.build_process(config, task, settings), training.client_datasets(config),
        config, groups=1, pin_draws=True, lanes=1)
    try:
      start = start or runner.set_model_weights(
          runner.initialize(), tff.learning.models.ModelWeights(
              *models.initial_weights(task.build_model(config))))
      state, states = start, []
      clients = [(*data.train_examples(i), -1) for i in range(8)]
      for dropouts in (None, secagg.Dropouts(2, 1, (3,))):
        state, _ = runner.next(state, clients, dropouts=dropouts)
        states.append(mrf_runner._flatten_value(state))  # pylint: disable=protected-access
      runs[how] = states
    finally:
      runner.close()
  for a, b in zip(runs['simulated'], runs['protocol']):
    assert len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                    for x, y in zip(a, b))
  assert not all(np.array_equal(np.asarray(x), np.asarray(y))  # the rounds moved it
                 for x, y in zip(runs['simulated'][0], runs['simulated'][1]))


@pytest.mark.slow
def test_a_round_the_protocol_cannot_finish_stops_the_run_naming_the_round(tmp_path):
  # t = 8 of 9 in each neighbourhood, 80% of the devices gone: no round survives.
  with pytest.raises(secagg.AbortError, match=r'^Round 1: SecAgg aborted: .*no sum was '
                     r'formed\. Rounds up to 0 are checkpointed; lower clients.dropout'):
    training.train_and_evaluate(tiny_config(**{
        'dp.mechanism': 'gaussian_fixed', 'dp.secure_sum': True, 'clients.dropout': 0.8,
        **PROTOCOL, 'secure_aggregation.num_shares': 9,
        'secure_aggregation.threshold': 0.8}), str(tmp_path / 'run'))
