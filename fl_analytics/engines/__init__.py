"""How rounds execute: the engine interface and the registry of engines.

An engine runs the rounds of one TFF learning process (`tff.learning.templates.
LearningProcess`, as `build_unweighted_fed_avg` builds it): the round loop
(`fl_analytics.runs.training`) hands it the server state and the round's clients and gets
back the new state and the round's metrics, whatever runs the computation. This is the
interface of TFF's own `LearningProcess` (`initialize`, `next`, `get_model_weights`,
`set_model_weights`), with the clients given as arrays, so that an engine decides how
to turn them into the process's datasets and where to run them. This module imports TensorFlow only when
an engine is built.

* ``mapreduce``: the process's MapReduceForm run in this process
  (`fl_analytics.engines.mrf_runner`); it can report the bytes each client sent.
* ``cpp``: TFF's local C++ runtime, through a worker process this run owns
  (`fl_analytics.core.runtime.local_cpp_context`); its output goes to the run's
  `worker.log`.
* ``vectorized``: as ``mapreduce``, with the cohort's local training as stacked
  computations over chunks of clients (`fl_analytics.engines.vectorized`,
  `fl_analytics.engines.stacked`): every task's model whose weights are layer
  attributes, every mechanism and option (the client-side aggregation that is more
  than clipping runs as TFF's own graph, client by client); a model it cannot stack
  is refused by name (`VectorizedEngine.refusals`).
* ``auto`` (the default) is not an engine but a choice (`resolve`): ``vectorized`` where
  it runs the run, else ``mapreduce``, with the reason recorded in config.json
  (`resolved.engine`, `resolved.engine_reason`); a resumed run keeps its engine.

``mapreduce`` and ``vectorized`` run a round's clients in `runtime.client_groups` fixed
groups (client k in group k % groups, merged in order; 0: 2 and 1). With
`runtime.ray_address` each group runs on a Ray actor of that cluster
(`fl_analytics.engines.ray_actors`), which makes its clients' data itself: the engine then
takes clients by user index (`builds_client_data`), and gives the same results as on
one machine with the same groups.

They give the same states and metrics to float tolerance (`tests/mrf_runner_test.py`,
`tests/vectorized_test.py`). An engine is chosen once per launch, by name
(`runtime.engine`, or `resolve` for `auto`), with `build`; adding one is a class here
and one line in `REGISTRY`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
from typing import Any, Callable, ClassVar, Iterator, Optional, Sequence

import numpy as np

from fl_analytics import tasks
from fl_analytics.privacy import mechanisms
from fl_analytics.privacy import secagg
from fl_analytics.core import rundir

@dataclasses.dataclass(frozen=True)
class Client:
  """One reporting client of a round: its examples and its cap on local steps.

  For an engine that `builds_client_data`, a training user is given by `user` alone
  (x and y None) and made where the engine runs it."""

  x: Optional[np.ndarray]
  y: Optional[np.ndarray]
  max_steps: int = -1  # local batches this round; -1: all
  user: int = -1  # training-user index, when x and y are None


class Engine(abc.ABC):
  """Runs the rounds of one learning process."""

  name: ClassVar[str]

  def __init__(self, process, dataset_fn: Callable, *, config=None, settings=None,
               workdir: Optional[str] = None, max_concurrent_computation_calls: int = -1,
               client_work: Optional[Callable] = None):
    """Every engine takes what `build` passes; a subclass uses what it needs.

    `dataset_fn(x, y)`: the `tf.data.Dataset` of one client's batches. `config`: the
    run's config; `settings`: its resolved DP settings. `workdir`: the run directory
    (for logs). `client_work(config, settings)`: `(population, process, dataset_fn)`
    built from scratch, what a remote worker (a Ray actor) runs its clients with; the
    run layer provides it, so that no engine imports a run."""
    self._process = process
    self._dataset_fn = dataset_fn
    self._config = config
    self._settings = settings
    self._workdir = workdir
    self._max_concurrent_computation_calls = max_concurrent_computation_calls
    self._client_work = client_work

  @classmethod
  def check(cls, config) -> None:
    """ValueError naming what of `config` this engine cannot run (default: all runs)."""
    del config

  @abc.abstractmethod
  def initialize(self) -> Any:
    """The process's initial server state."""

  @abc.abstractmethod
  def next(self, state, clients: Sequence[Client], *,
           dropouts=None) -> tuple[Any, Any]:
    """One round over `clients` (possibly none): `(new state, metrics)`.

    `dropouts` (`fl_analytics.privacy.secagg.Dropouts`): with the SecAgg protocol
    (`secure_aggregation.sum=protocol`), when the cohort's devices drop out of it."""

  def get_model_weights(self, state):
    return self._process.get_model_weights(state)

  def set_model_weights(self, state, model_weights):
    return self._process.set_model_weights(state, model_weights)

  @property
  def client_bytes(self) -> Optional[float]:
    """Bytes one client sends per round, if this engine can tell."""
    return None

  @property
  def builds_client_data(self) -> bool:
    """True: `next` takes training users as `Client(None, None, steps, user=i)` and
    makes their examples itself (the round loop then makes none)."""
    return False

  def prefetch(self, reporting: np.ndarray, population_size: int) -> None:
    """The next round's reporting clients (indices from `population_size` on are
    canaries), given before this round's `next` to an engine that builds client data,
    which makes them while this round trains."""
    del reporting, population_size

  def close(self) -> None:
    """Releases what the engine holds (sessions, worker processes)."""


class MapReduceEngine(Engine):
  """The process's MapReduceForm, in this process (`fl_analytics.engines.mrf_runner`); the
  client groups on Ray actors with `runtime.ray_address` (`fl_analytics.engines.ray_actors`)."""

  name = 'mapreduce'
  DEFAULT_GROUPS = 2

  def __init__(self, process, dataset_fn, **kwargs):
    super().__init__(process, dataset_fn, **kwargs)
    config = self._config
    runtime = config.runtime if config is not None else {}
    address, groups = runtime.get('ray_address'), runtime.get('client_groups', 0)
    self._actors = None
    if address:
      from fl_analytics.cluster import ray_cluster  # pylint: disable=g-import-not-at-top
      from fl_analytics.engines import ray_actors  # pylint: disable=g-import-not-at-top

      cpus = runtime.get('ray_cpus_per_group', 1)
      if not groups:  # one group per `cpus` of the cluster's CPUs
        ray = ray_cluster.connect(address)
        groups = max(1, ray_cluster.cluster_cpus(ray) // cpus)
      self._runner = self.make_runner(process, dataset_fn, config, groups=groups)
      try:
        if self._client_work is None:
          raise ValueError('runtime.ray_address needs the run\'s client_work to build '
                           'the actors\' processes (engines.build(client_work=...)).')
        self._actors = ray_actors.ActorGroups(
            address, config, self._settings, client_work=self._client_work,
            make_runner=self.make_runner, groups=groups, cpus_per_group=cpus)
      except BaseException:
        self._runner.close()
        raise
      self._runner.group_executor = self._actors
    else:
      self._runner = self.make_runner(process, dataset_fn, config,
                                      groups=groups or self.DEFAULT_GROUPS)

  @classmethod
  def make_runner(cls, process, dataset_fn, config, *, groups: int):
    """The runner of a round's client work (also what each Ray actor runs)."""
    from fl_analytics.engines import mrf_runner  # pylint: disable=g-import-not-at-top

    return mrf_runner.MapReduceRunner(process, dataset_fn, groups=groups,
                                      secure_protocol=_secure_protocol(config))

  @property
  def builds_client_data(self) -> bool:
    return self._actors is not None

  def prefetch(self, reporting, population_size):
    if self._actors is not None:  # the users of group g, made on actor g
      self._actors.prefetch([[int(i) for i in group if i < population_size]
                             for group in self._runner.groups_of(reporting)])

  def initialize(self):
    return self._runner.initialize()

  def next(self, state, clients, *, dropouts=None):
    if self._actors is not None:
      return self._runner.next(state, list(clients))
    return self._runner.next(state, [(c.x, c.y, c.max_steps) for c in clients],
                             dropouts=dropouts)

  def get_model_weights(self, state):
    return self._runner.get_model_weights(state)

  def set_model_weights(self, state, model_weights):
    return self._runner.set_model_weights(state, model_weights)

  @property
  def client_bytes(self):
    return self._runner.sent_bytes

  def close(self):
    try:
      if self._actors is not None:
        self._actors.close()
    finally:
      self._runner.close()


class CppEngine(Engine):
  """TFF's local C++ runtime on a worker this run owns (`fl_analytics.core.runtime`)."""

  name = 'cpp'

  def __init__(self, process, dataset_fn, **kwargs):
    super().__init__(process, dataset_fn, **kwargs)
    from fl_analytics.core import runtime  # pylint: disable=g-import-not-at-top

    workdir = self._workdir
    self._stack = contextlib.ExitStack()
    self._stack.enter_context(runtime.local_cpp_context(
        max_concurrent_computation_calls=self._max_concurrent_computation_calls,
        log_path=os.path.join(workdir, rundir.WORKER_LOG) if workdir else None))

  def initialize(self):
    return self._process.initialize()

  def next(self, state, clients, *, dropouts=None):
    del dropouts  # the protocol is refused for this engine (`check_config`)
    output = self._process.next(
        state, [self._dataset_fn(c.x, c.y).take(c.max_steps) for c in clients])
    return output.state, output.metrics

  def close(self):
    self._stack.close()


class VectorizedEngine(MapReduceEngine):
  """TFF's round from its MapReduceForm, the clients' local training as one stacked
  computation over the cohort (`fl_analytics.engines.vectorized`); what it runs is checked
  against the `mapreduce` engine, and the rest refused by name (`check`)."""

  name = 'vectorized'
  DEFAULT_GROUPS = 1

  @classmethod
  def make_runner(cls, process, dataset_fn, config, *, groups: int, **options):
    """The runner of `config`; `options`: more `VectorizedRunner` arguments (tests:
    `lanes`, `pin_draws`)."""
    from fl_analytics.engines import stacked  # pylint: disable=g-import-not-at-top
    from fl_analytics.engines import vectorized  # pylint: disable=g-import-not-at-top

    task = tasks.get(config.task)
    model = stacked.StackedModel(task.build_model(config), task.loss(),
                                 task.keras_metrics(), task.input_spec(config)[0])
    return vectorized.VectorizedRunner(
        process, dataset_fn, model=model, learning_rate=config.client.learning_rate,
        batch_size=config.client.batch_size, local_epochs=config.client.local_epochs,
        clip=config.dp.clip if mechanisms.get(config.dp.mechanism).private else None,
        groups=groups, memory_mb=config.runtime.get('vectorized_memory_mb', 1024),
        canary_seed=config.seed if config.audit.canaries else None,
        secure_protocol=_secure_protocol(config), **options)

  @classmethod
  def refusals(cls, config) -> list[str]:
    """What of `config` this engine does not run, each named ([]: it runs it)."""
    # Every mechanism and option: the aggregator's client-side steps run as TFF's own
    # graph where they are more than clipping (`vectorized._AggregationStep`). What
    # remains is the task's model, loss and metrics (this builds the Keras model).
    from fl_analytics.engines import stacked  # pylint: disable=g-import-not-at-top

    task = tasks.get(config.task)
    if refusal := stacked.refusal(task.build_model(config), task.keras_metrics()):
      return [f'task={config.task}\'s model ({refusal})']
    return []

  @classmethod
  def check(cls, config) -> None:
    if refused := cls.refusals(config):
      raise ValueError('runtime.engine=vectorized does not run ' + ', '.join(refused)
                       + '. Use runtime.engine=mapreduce or auto.')


def _secure_protocol(config):
  """The SecAgg protocol's parameters of `config` (None: simulated secure sums)."""
  return secagg.parameters_of(config.get('secure_aggregation') if config is not None
                              else None)


REGISTRY: dict[str, type[Engine]] = {e.name: e for e in (MapReduceEngine, CppEngine,
                                                          VectorizedEngine)}


AUTO = 'auto'


def check_name(name: str) -> None:
  if name not in REGISTRY and name != AUTO:
    raise ValueError(f'runtime.engine must be one of {AUTO}, {", ".join(REGISTRY)}. '
                     f'Found {name!r}.')


def resolve(config, previous: Optional[str] = None) -> tuple[str, str]:
  """The engine that runs `config`, and why, in one line.

  `runtime.engine=auto`: the engine of `previous` rounds of the same run, if any (so a
  resumed run replays exactly); else `vectorized` when it runs the run's task, model,
  mechanism and options (`VectorizedEngine.refusals`), else `mapreduce`, naming what
  it does not run. Any other value is that engine."""
  name = config.runtime.engine
  check_name(name)
  if name != AUTO:
    return name, f'runtime.engine={name}'
  if previous in REGISTRY:
    REGISTRY[previous].check(config)
    return previous, (f'runtime.engine=auto kept {previous}, the engine of the run\'s '
                      'rounds so far')
  refused = VectorizedEngine.refusals(config)
  if refused:
    return MapReduceEngine.name, ('runtime.engine=auto chose mapreduce: the vectorized '
                                  'engine does not run ' + ', '.join(refused))
  options = [f'dp.mechanism={config.dp.mechanism}']
  if config.compression.bits:
    options.append(f'compression.bits={config.compression.bits}')
  if config.dp.secure_sum:
    options.append('dp.secure_sum=True')
  if config.audit.canaries:
    options.append('audit canaries')
  return VectorizedEngine.name, (f'runtime.engine=auto chose vectorized: it runs '
                                 f'task={config.task} with ' + ', '.join(options))


def check_config(config) -> None:
  """ValueError if `runtime.engine` is unknown or cannot run `config`."""
  runtime = config.runtime
  check_name(runtime.engine)
  if runtime.engine != AUTO:
    REGISTRY[runtime.engine].check(config)
  memory = runtime.get('vectorized_memory_mb', 1024.0)
  if isinstance(memory, bool) or not isinstance(memory, (int, float)) or not memory > 0:
    raise ValueError('runtime.vectorized_memory_mb must be a number > 0 (megabytes). '
                     f'Found {memory!r}.')
  if runtime.get('client_groups', 0) < 0:
    raise ValueError('runtime.client_groups must be >= 0 (0: the engine\'s default). '
                     f'Found {runtime.client_groups}.')
  if _secure_protocol(config) is not None:
    if runtime.engine == CppEngine.name or runtime.get('ray_address'):
      raise ValueError('secure_aggregation.sum=protocol runs with runtime.engine='
                       'mapreduce, vectorized or auto, without runtime.ray_address. '
                       f'Found runtime.engine={runtime.engine}'
                       + (', runtime.ray_address set.' if runtime.get('ray_address')
                          else '.'))
  if runtime.get('ray_address'):
    if runtime.engine != AUTO and not issubclass(REGISTRY[runtime.engine], MapReduceEngine):
      raise ValueError('runtime.ray_address runs the client groups of the mapreduce or '
                       f'vectorized engine on Ray; runtime.engine={runtime.engine} has '
                       'none. Use one of those.')
    if runtime.get('ray_cpus_per_group', 1) < 1:
      raise ValueError('runtime.ray_cpus_per_group must be >= 1. Found '
                       f'{runtime.ray_cpus_per_group}.')


@contextlib.contextmanager
def build(name: str, process, dataset_fn: Callable, *, workdir: Optional[str] = None,
          max_concurrent_computation_calls: int = -1, config=None,
          settings=None, client_work: Optional[Callable] = None) -> Iterator[Engine]:
  """The engine `name` for `process`, closed when the block exits, however it exits.

  The keyword arguments are `Engine.__init__`'s: `settings` and `client_work` are what
  Ray actors rebuild the process and the population from, with `config`. `name` is
  an engine's (`resolve` turns `auto` into one)."""
  if name not in REGISTRY:
    raise ValueError(f'engines.build needs an engine of {", ".join(REGISTRY)} (resolve '
                     f'{AUTO!r} first). Found {name!r}.')
  engine = REGISTRY[name](process, dataset_fn, workdir=workdir,
                          max_concurrent_computation_calls=max_concurrent_computation_calls,
                          config=config, settings=settings, client_work=client_work)
  try:
    yield engine
  finally:
    engine.close()
