"""Contract tests over every registry: mechanisms, sampling schemes, tasks and engines.

Each test is parametrized from the registries themselves, so a new entry is tested
without anyone editing this file: that it builds, that it refuses exactly what it
declares it cannot do, that its dp_accounting event composes in dp_accounting's own
accountant to the epsilon the statement reports and that calibration finds its noise
again, and that a 2-round tiny run of it finishes.
"""

import dataclasses
import itertools
import math
import os

import dp_accounting
import numpy as np
import pytest

from fl_analytics import engines
from fl_analytics import tasks
from fl_analytics.core import rundir
from fl_analytics.data import generators
from fl_analytics.privacy import aggregators
from fl_analytics.privacy import canaries
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import sampling
from fl_analytics.privacy import statement
from tests.helpers import VARIANTS
from tests.helpers import task_config
from tests.helpers import tiny_config

MECHANISMS = list(mechanisms.REGISTRY)
SCHEMES = list(sampling.SCHEMES)
TASKS = list(tasks.REGISTRY)
GENERATORS = list(generators.REGISTRY)
ENGINES = list(engines.REGISTRY)
PRIVATE = [m for m in MECHANISMS if mechanisms.get(m).private]
# Every (private mechanism, scheme, accountant) it declares it is accounted for.
ACCOUNTED = [(m, s, a) for m in PRIVATE for s in mechanisms.get(m).samplings
             for a in mechanisms.get(m).accountants if a in sampling.get(s).accountants]
# Each mechanism on its first scheme, and each scheme with the first mechanism accounted
# for it (calibration is a search over the accountant: one entry each is enough).
CALIBRATED = list(dict.fromkeys(
    [(m, mechanisms.get(m).samplings[0], 'rdp') for m in PRIVATE]
    + [(next(m for m in PRIVATE if s in mechanisms.get(m).samplings), s, 'rdp')
       for s in SCHEMES]))
NUM_PARAMETERS = 577  # the default churn model's


def _settings(mechanism, scheme, accountant='rdp', z=2.0):
  """Loose settings of `mechanism` on `scheme`, resolved as a run resolves them."""
  m = mechanisms.get(mechanism)
  settings = mechanisms.DpSettings(
      mechanism=mechanism, noise_multiplier=z, clip=0.2, clients_per_round=50,
      population_size=800, sampling=scheme, accountant=accountant, delta=1e-5,
      num_parameters=NUM_PARAMETERS if m.needs_num_parameters else None,
      planned_rounds=30)
  return m.resolve(settings)


# --- mechanisms × sampling schemes: accounting ------------------------------------------


@pytest.mark.parametrize('mechanism,scheme,accountant',
                         list(itertools.product(MECHANISMS, SCHEMES, statement.ACCOUNTANTS)))
def test_accounting_refuses_exactly_what_mechanism_and_scheme_do_not_declare(
    mechanism, scheme, accountant):
  m = mechanisms.get(mechanism)
  declared = accountant in sampling.get(scheme).accountants and (
      not m.private or (scheme in m.samplings and accountant in m.accountants))
  if declared:
    statement.check_accounting(accountant=accountant, sampling=scheme, mechanism=mechanism)
  else:
    with pytest.raises(ValueError):
      statement.check_accounting(accountant=accountant, sampling=scheme,
                                 mechanism=mechanism)


@pytest.mark.parametrize('mechanism,scheme,accountant', ACCOUNTED)
def test_event_composes_in_dp_accounting_to_the_statement_epsilon(
    mechanism, scheme, accountant):
  settings = _settings(mechanism, scheme, accountant)
  m, rounds = mechanisms.get(mechanism), 30
  event = m.event(settings, rounds)
  assert isinstance(event, dp_accounting.DpEvent)
  relation = sampling.get(scheme).relation
  if accountant == 'pld':
    acc = dp_accounting.pld.PLDAccountant(relation)
  else:
    acc = dp_accounting.rdp.RdpAccountant(
        orders=list(m.rdp_orders) if m.rdp_orders else None, neighboring_relation=relation)
  if not acc.supports(event):
    pytest.skip(f'{mechanism}: an event dp_accounting {accountant} does not analyse (its '
                'RDP is checked in tests/privacy_test.py and tests/schedules_test.py)')
  expected = acc.compose(event).get_epsilon(settings.delta)
  got = statement.epsilon(settings, rounds)
  if accountant == 'pld':  # the statement's coarser discretization is pessimistic
    assert expected <= got <= expected + 1e-3
  else:
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize('mechanism,scheme,accountant', CALIBRATED)
def test_calibration_finds_the_noise_that_spends_the_target_again(
    mechanism, scheme, accountant):
  settings, rounds = _settings(mechanism, scheme, accountant, z=1.7), 20
  eps = statement.epsilon(settings, rounds)
  z = statement.calibrate(dataclasses.replace(settings, noise_multiplier=1.0),
                          rounds=rounds, target_epsilon=eps)
  assert z == pytest.approx(1.7, rel=0.02)
  spent = statement.epsilon(mechanisms.get(mechanism).resolve(
      dataclasses.replace(settings, noise_multiplier=z)), rounds)
  assert spent <= eps * (1 + 1e-9)


@pytest.mark.parametrize('mechanism', PRIVATE)
def test_more_noise_never_costs_more_epsilon(mechanism):
  scheme = mechanisms.get(mechanism).samplings[0]
  eps = [statement.epsilon(_settings(mechanism, scheme, z=z), 10) for z in (1.0, 2.0, 4.0)]
  assert eps[0] > eps[1] > eps[2] > 0


# --- mechanisms: what they declare they refuse ------------------------------------------


@pytest.mark.parametrize('mechanism', MECHANISMS)
def test_secure_sum_compression_and_dropout_are_refused_as_declared(mechanism):
  m = mechanisms.get(mechanism)
  checks = [
      (m.secure_sum, lambda: aggregators.check_secure_sum(mechanism, True)),
      (m.compression, lambda: aggregators.check_compression(
          mechanism=mechanism, bits=8, threshold=100)),
      (m.dropout, lambda: mechanisms.check_dropout(mechanism, 0.1)),
  ]
  for allowed, check in checks:
    if allowed:
      check()
    else:
      with pytest.raises(ValueError):
        check()


@pytest.mark.parametrize('mechanism', MECHANISMS)
def test_audit_canaries_are_refused_as_declared(mechanism):
  m = mechanisms.get(mechanism)
  config = tiny_config(**{'dp.mechanism': mechanism, 'sampling': m.samplings[0],
                          'audit.canaries': 40})
  if m.canaries:
    canaries.check_config(config)
  else:
    with pytest.raises(ValueError, match=mechanism):
      canaries.check_config(config)


@pytest.mark.parametrize('mechanism', MECHANISMS)
def test_declared_config_keys_are_in_the_config_and_reach_the_settings(mechanism):
  config = tiny_config()
  for key in mechanisms.get(mechanism).config:
    assert config.dp[key.name] == key.default
    changed = mechanisms.DpSettings(params={key.name: 'x'})
    assert changed.param(key) == 'x' and mechanisms.DpSettings().param(key) == key.default


def test_no_two_mechanisms_declare_the_same_key():
  names = [k.name for k in mechanisms.config_keys()]
  assert len(names) == len(set(names))
  assert not set(names) & {f.name for f in dataclasses.fields(mechanisms.DpSettings)}


@pytest.mark.parametrize('mechanism', MECHANISMS)
def test_each_mechanism_builds_its_tff_aggregator(mechanism):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  m = mechanisms.get(mechanism)
  settings = dataclasses.replace(_settings(mechanism, m.samplings[0]), restart_period=4,
                                 noise_seed=0)
  aggregators.check(settings)
  specs = [tf.TensorSpec([16, 32], tf.float32), tf.TensorSpec([32], tf.float32)]
  factory = aggregators.build(settings, record_specs=specs)
  assert isinstance(factory, tff.aggregators.UnweightedAggregationFactory)
  process = factory.create(tff.types.to_type([tff.TensorType(np.float32, [16, 32]),
                                              tff.TensorType(np.float32, [32])]))
  assert process.initialize.type_signature.result.placement is tff.SERVER


@pytest.mark.parametrize('mechanism', PRIVATE)
def test_no_mechanism_with_guessable_noise_is_labelled_deployable(mechanism):
  # Unseeded noise and secret sampling: deployable unless a library seeds the
  # mechanism's noise from the clock, which the statement then says.
  m = mechanisms.get(mechanism)
  settings = dataclasses.replace(_settings(mechanism, m.samplings[0]),
                                 reproducible_noise=False, reproducible_sampling=False)
  written = statement.statement(settings, rounds=2)
  assert written['simulation_only'] is bool(m.clock_seeded_noise)
  assert written['differentially_private'] is not bool(m.clock_seeded_noise)
  if m.clock_seeded_noise:
    assert written['simulation_caveats'] == [
        f'the DP noise is seeded from the clock: {m.clock_seeded_noise}']
  # With the noise drawn from the recorded seed, no mechanism is private against
  # whoever reads it.
  seeded = statement.statement(dataclasses.replace(settings, reproducible_noise=True), 2)
  assert seeded['differentially_private'] is False and seeded['simulation_only']


# --- sampling schemes ---------------------------------------------------------------------


@pytest.mark.parametrize('scheme', SCHEMES)
def test_a_cohort_is_a_pure_function_of_seed_and_round_of_about_the_asked_size(scheme):
  # Devices available all day (`available`), so every round can fill its cohort.
  everyone = sampling.Participation(window_hours=24)
  draw = lambda seed, r: sampling.cohort(
      sampling=scheme, population_size=400, clients_per_round=40, seed=seed, round_num=r,
      participation=everyone)
  first = draw(3, 1)
  np.testing.assert_array_equal(first, draw(3, 1))
  assert not np.array_equal(first, draw(3, 2)) or not np.array_equal(first, draw(4, 1))
  sizes = [len(draw(3, r)) for r in range(1, 41)]
  assert abs(np.mean(sizes) - 40) < 5
  assert all(0 <= u < 400 for u in first) and len(set(first.tolist())) == len(first)


@pytest.mark.parametrize('scheme', SCHEMES)
def test_every_scheme_is_accounted_for_some_mechanism(scheme):
  assert any(scheme in mechanisms.get(m).samplings for m in PRIVATE)


# --- tasks --------------------------------------------------------------------------------


@pytest.fixture(scope='module', params=[
    (task, generator, variant) for task, generator in itertools.product(TASKS, GENERATORS)
    for variant in ('default', *VARIANTS.get(task, {}))],
                ids=lambda p: '-'.join(p))
def task_and_config(request):
  """Every task, and each of its model variants, on every behaviour model (each fixes
  the vocabulary)."""
  task, generator, variant = request.param
  return tasks.get(task), task_config(task, variant, **{'data.generator': generator})


def test_task_examples_fit_its_input_spec_and_model(task_and_config):
  task, config = task_and_config
  task.check_config(config)
  data = task.build_data(config)
  x, y = next((x, y) for x, y in data.train_examples_many(list(range(20))) if len(y))
  x_spec, y_spec = task.input_spec(config)
  assert x.shape[1:] == tuple(x_spec.shape[1:]) and y.shape[1:] == tuple(y_spec.shape[1:])
  model = task.build_model(config)
  assert [int(np.prod(w.shape)) for w in model.trainable_weights] == task.tensor_sizes(config)
  logits = model(x, training=False).numpy()
  metrics = task.eval_metrics(logits, y)
  columns = {f'eval_{k}' for k in metrics}
  assert columns <= set(task.eval_columns) and task.headline.column in columns
  assert all(c in tasks.EVAL_COLUMNS for c in task.eval_columns)
  assert math.isfinite(task.chance_loss(config)) and task.num_classes(config) >= 2


def test_task_device_spec_reproduces_its_training_examples(task_and_config):
  from fl_analytics.data import clients  # pylint: disable=g-import-not-at-top

  task, config = task_and_config
  spec = {'task': task.name, **task.device_features_spec(config)}
  assert {'input', 'output'} <= set(spec)
  logs, origin, num_days, _ = clients.load_logs(config.data, seed=config.data.seed)
  log = next(l for l in logs if len(l.events) > 50)
  kw = dict(origin_timestamp=origin, num_days=num_days)
  x_pipeline, _ = task.examples_fn(config.data)(
      log.timestamps, log.events, np.array([0, len(log.events)]), **kw)[0]
  x_device, _ = task.examples_from_spec(spec, log.timestamps, log.events, **kw)
  assert len(x_pipeline) and list(x_device.shape[1:]) == spec['input']['shape'][1:]
  # the pipeline may keep only a user's most recent examples
  np.testing.assert_array_equal(x_device[len(x_device) - len(x_pipeline):], x_pipeline)


@pytest.mark.parametrize('task', TASKS)
def test_task_baseline_reads_summary_rows(task):
  t = tasks.get(task)
  assert t.accuracy_baseline([]) is None
  classes = t.num_classes(task_config(task))
  description = t.baseline_description(np.array([0.7, 0.3] + [0.0] * (classes - 2)))
  assert description


# --- engines ------------------------------------------------------------------------------


@pytest.mark.parametrize('engine', ENGINES)
@pytest.mark.parametrize('mechanism', MECHANISMS)
@pytest.mark.parametrize('task', TASKS)
def test_every_engine_accepts_every_mechanism(engine, mechanism, task):
  m = mechanisms.get(mechanism)
  engines.check_config(task_config(task, **{
      'runtime.engine': engine, 'dp.mechanism': mechanism, 'sampling': m.samplings[0]}))


def _auto_cases():
  """(task, mechanism, option) for every option each mechanism allows."""
  for task, mechanism in itertools.product(TASKS, MECHANISMS):
    m = mechanisms.get(mechanism)
    for option, allowed in (('none', True), ('compression.bits', m.compression),
                            ('dp.secure_sum', m.secure_sum)):
      if allowed:
        yield task, mechanism, option


@pytest.mark.parametrize('task, mechanism, option', list(_auto_cases()))
def test_auto_chooses_vectorized_for_every_mechanism_and_option_and_says_why(
    task, mechanism, option):
  m = mechanisms.get(mechanism)
  overrides = {'dp.mechanism': mechanism, 'sampling': m.samplings[0]}
  if option == 'compression.bits':
    overrides['compression.bits'] = 8
  if option == 'dp.secure_sum':
    overrides['dp.secure_sum'] = True
  config = task_config(task, **overrides)
  assert config.runtime.engine == engines.AUTO  # the default
  name, why = engines.resolve(config)
  assert name == 'vectorized' and f'dp.mechanism={mechanism}' in why
  if option != 'none':
    assert option in why
  # A resumed run keeps the engine of its rounds so far; an explicit engine is that one.
  assert engines.resolve(config, previous='mapreduce')[0] == 'mapreduce'
  explicit = task_config(task, **overrides, **{'runtime.engine': 'mapreduce'})
  assert engines.resolve(explicit, previous=name)[0] == 'mapreduce'


def test_an_engine_subclass_without_its_own_init_builds(monkeypatch):
  class Echo(engines.Engine):
    name = 'echo'

    def initialize(self):
      return 0

    def next(self, state, clients):
      return state + len(clients), {}

  monkeypatch.setitem(engines.REGISTRY, 'echo', Echo)
  with engines.build('echo', process=None, dataset_fn=None, config=tiny_config()) as e:
    assert e.next(e.initialize(), [None, None]) == (2, {})


# --- a 2-round tiny run of every entry ----------------------------------------------------


def _tiny_runs():
  """One run per registry entry: each mechanism on its first scheme, each scheme with
  the first private mechanism accounted for it, each task, each engine on what it runs."""
  runs = {}
  for m in MECHANISMS:
    runs[f'mechanism-{m}'] = {'dp.mechanism': m, 'sampling': mechanisms.get(m).samplings[0]}
  for s in SCHEMES:
    m = next(m for m in PRIVATE if s in mechanisms.get(m).samplings)
    runs.setdefault(f'scheme-{s}', {'dp.mechanism': m, 'sampling': s})
  for t in TASKS:
    runs[f'task-{t}'] = {'task': t}
  last = MECHANISMS[-1]
  for e in (*ENGINES, engines.AUTO):
    runs[f'engine-{e}'] = {'runtime.engine': e, 'dp.mechanism': last,
                           'sampling': mechanisms.get(last).samplings[0]}
  return runs


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.cpp) if n == 'engine-cpp' else n for n in _tiny_runs()])
def test_a_two_round_tiny_run_finishes(name, tmp_path):
  from fl_analytics.runs import training  # pylint: disable=g-import-not-at-top

  overrides = {**_tiny_runs()[name], 'evaluation.personalization_steps': 0}
  config = task_config(overrides.pop('task', tasks.DEFAULT), **overrides)
  workdir = str(tmp_path / name)
  training.train_and_evaluate(config, workdir)
  assert not rundir.incomplete_reasons(workdir, 2)
  written = rundir.read_json(os.path.join(workdir, rundir.PRIVACY_FILE))
  assert written['rounds'] == 2 and written['mechanism'] == config.dp.mechanism
  # The engine that ran, and why, as `auto` (or the named engine) resolves it.
  resolved = rundir.read_json(os.path.join(workdir, rundir.CONFIG_FILE))['resolved']
  assert (resolved['engine'], resolved['engine_reason']) == engines.resolve(config)
