"""How rounds execute: the engine interface and the registry of engines.

An engine runs the rounds of one TFF learning process (`tff.learning.templates.
LearningProcess`, as `build_unweighted_fed_avg` builds it): the round loop
(`fl_analytics.training`) hands it the server state and the round's clients and gets
back the new state and the round's metrics, whatever runs the computation. This is the
interface of TFF's own `LearningProcess` (`initialize`, `next`, `get_model_weights`,
`set_model_weights`), with the clients given as arrays, so that an engine decides how
to turn them into the process's datasets and where to run them. This module imports TensorFlow only when
an engine is built.

* ``mapreduce`` (default): the process's MapReduceForm run in this process
  (`fl_analytics.mrf_runner`); it can report the bytes each client sent.
* ``cpp``: TFF's local C++ runtime, through a worker process this run owns
  (`fl_analytics.runtime.local_cpp_context`); its output goes to the run's
  `worker.log`.
* ``vectorized``: as ``mapreduce``, with the cohort's local training as one computation
  over all clients (`fl_analytics.vectorized`); churn with ``none``,
  ``gaussian_fixed`` or ``gaussian_adaptive`` only, the rest refused by name
  (`check_config`).

``mapreduce`` and ``vectorized`` run a round's clients in `runtime.client_groups` fixed
groups (client k in group k % groups, merged in order; 0: 2 and 1). With
`runtime.ray_address` each group runs on a Ray actor of that cluster
(`fl_analytics.ray_engine`), which makes its clients' data itself: the engine then
takes clients by user index (`builds_client_data`), and gives the same results as on
one machine with the same groups.

Both give the same states and metrics (`tests/mrf_runner_test.py`). An engine is chosen
once, by name (`runtime.engine`), with `build`; adding one is a class here and one line
in `_ENGINES`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
from typing import Any, Callable, ClassVar, Iterator, Optional, Sequence

import numpy as np

from fl_analytics import rundir

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

  def __init__(self, process, dataset_fn: Callable):
    """`dataset_fn(x, y)`: the `tf.data.Dataset` of one client's batches."""
    self._process = process
    self._dataset_fn = dataset_fn

  @classmethod
  def check(cls, config) -> None:
    """ValueError naming what of `config` this engine cannot run (default: all runs)."""
    del config

  @abc.abstractmethod
  def initialize(self) -> Any:
    """The process's initial server state."""

  @abc.abstractmethod
  def next(self, state, clients: Sequence[Client]) -> tuple[Any, Any]:
    """One round over `clients` (possibly none): `(new state, metrics)`."""

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
  """The process's MapReduceForm, in this process (`fl_analytics.mrf_runner`); the
  client groups on Ray actors with `runtime.ray_address` (`fl_analytics.ray_engine`)."""

  name = 'mapreduce'
  DEFAULT_GROUPS = 2

  def __init__(self, process, dataset_fn, *, config=None, settings=None, **unused):
    super().__init__(process, dataset_fn)
    runtime = config.runtime if config is not None else {}
    address, groups = runtime.get('ray_address'), runtime.get('client_groups', 0)
    self._actors = None
    if address:
      from fl_analytics import ray_cluster  # pylint: disable=g-import-not-at-top
      from fl_analytics import ray_engine  # pylint: disable=g-import-not-at-top

      cpus = runtime.get('ray_cpus_per_group', 1)
      if not groups:  # one group per `cpus` of the cluster's CPUs
        ray = ray_cluster.connect(address)
        groups = max(1, ray_cluster.cluster_cpus(ray) // cpus)
      self._runner = self.make_runner(process, dataset_fn, config, groups=groups)
      try:
        self._actors = ray_engine.ActorGroups(address, config, settings,
                                              engine_name=self.name, groups=groups,
                                              cpus_per_group=cpus)
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
    del config
    from fl_analytics import mrf_runner  # pylint: disable=g-import-not-at-top

    return mrf_runner.MapReduceRunner(process, dataset_fn, groups=groups)

  @property
  def builds_client_data(self) -> bool:
    return self._actors is not None

  def prefetch(self, reporting, population_size):
    if self._actors is not None:  # the users of group g, made on actor g
      self._actors.prefetch([[int(i) for i in group if i < population_size]
                             for group in self._runner.groups_of(reporting)])

  def initialize(self):
    return self._runner.initialize()

  def next(self, state, clients):
    if self._actors is not None:
      return self._runner.next(state, list(clients))
    return self._runner.next(state, [(c.x, c.y, c.max_steps) for c in clients])

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
  """TFF's local C++ runtime on a worker this run owns (`fl_analytics.runtime`)."""

  name = 'cpp'

  def __init__(self, process, dataset_fn, *, max_concurrent_computation_calls: int = -1,
               workdir: Optional[str] = None, **unused):
    super().__init__(process, dataset_fn)
    from fl_analytics import runtime  # pylint: disable=g-import-not-at-top

    self._stack = contextlib.ExitStack()
    self._stack.enter_context(runtime.local_cpp_context(
        max_concurrent_computation_calls=max_concurrent_computation_calls,
        log_path=os.path.join(workdir, rundir.WORKER_LOG) if workdir else None))

  def initialize(self):
    return self._process.initialize()

  def next(self, state, clients):
    output = self._process.next(
        state, [self._dataset_fn(c.x, c.y).take(c.max_steps) for c in clients])
    return output.state, output.metrics

  def close(self):
    self._stack.close()


class VectorizedEngine(MapReduceEngine):
  """TFF's round from its MapReduceForm, the clients' local training as one stacked
  computation over the cohort (`fl_analytics.vectorized`); what it runs is checked
  against the `mapreduce` engine, and the rest refused by name (`check`)."""

  name = 'vectorized'
  MECHANISMS = ('none', 'gaussian_fixed', 'gaussian_adaptive')
  DEFAULT_GROUPS = 1

  @classmethod
  def make_runner(cls, process, dataset_fn, config, *, groups: int):
    from fl_analytics import vectorized  # pylint: disable=g-import-not-at-top

    return vectorized.VectorizedRunner(
        process, dataset_fn, learning_rate=config.client.learning_rate,
        batch_size=config.client.batch_size, local_epochs=config.client.local_epochs,
        clip=None if config.dp.mechanism == 'none' else config.dp.clip, groups=groups)

  @classmethod
  def check(cls, config) -> None:
    refused = []
    if config.task != 'churn':
      refused.append(f'task={config.task} (it runs churn)')
    if config.dp.mechanism not in cls.MECHANISMS:
      refused.append(f'dp.mechanism={config.dp.mechanism} (it runs '
                     f'{", ".join(cls.MECHANISMS)})')
    if config.compression.bits:
      refused.append(f'compression.bits={config.compression.bits}')
    if config.dp.secure_sum:
      refused.append('dp.secure_sum=True')
    if config.audit.canaries:
      refused.append(f'audit.canaries={config.audit.canaries}')
    if config.model.hidden_units < 1:
      refused.append('model.hidden_units=0')
    if refused:
      raise ValueError('runtime.engine=vectorized does not run ' + ', '.join(refused)
                       + '. Use runtime.engine=mapreduce.')


_ENGINES: dict[str, type[Engine]] = {e.name: e for e in (MapReduceEngine, CppEngine,
                                                          VectorizedEngine)}


def check_name(name: str) -> None:
  if name not in _ENGINES:
    raise ValueError(f'runtime.engine must be one of {", ".join(_ENGINES)}. '
                     f'Found {name!r}.')


def check_config(config) -> None:
  """ValueError if `runtime.engine` is unknown or cannot run `config`."""
  runtime = config.runtime
  check_name(runtime.engine)
  _ENGINES[runtime.engine].check(config)
  if runtime.get('client_groups', 0) < 0:
    raise ValueError('runtime.client_groups must be >= 0 (0: the engine\'s default). '
                     f'Found {runtime.client_groups}.')
  if runtime.get('ray_address'):
    if not issubclass(_ENGINES[runtime.engine], MapReduceEngine):
      raise ValueError('runtime.ray_address runs the client groups of the mapreduce or '
                       f'vectorized engine on Ray; runtime.engine={runtime.engine} has '
                       'none. Use one of those.')
    if runtime.get('ray_cpus_per_group', 1) < 1:
      raise ValueError('runtime.ray_cpus_per_group must be >= 1. Found '
                       f'{runtime.ray_cpus_per_group}.')


def make_runner(name: str, process, dataset_fn: Callable, config, *, groups: int):
  """The client-work runner of engine `name` (what a Ray actor runs for its group)."""
  return _ENGINES[name].make_runner(process, dataset_fn, config, groups=groups)


@contextlib.contextmanager
def build(name: str, process, dataset_fn: Callable, *, workdir: Optional[str] = None,
          max_concurrent_computation_calls: int = -1, config=None,
          settings=None) -> Iterator[Engine]:
  """The engine `name` for `process`, closed when the block exits, however it exits.

  `settings`: the run's resolved DP settings (what Ray actors rebuild the process
  from, with `config`)."""
  check_name(name)
  engine = _ENGINES[name](process, dataset_fn, workdir=workdir,
                          max_concurrent_computation_calls=max_concurrent_computation_calls,
                          config=config, settings=settings)
  try:
    yield engine
  finally:
    engine.close()
