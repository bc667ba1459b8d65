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
  """One reporting client of a round: its examples and its cap on local steps."""

  x: np.ndarray
  y: np.ndarray
  max_steps: int = -1  # local batches this round; -1: all


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

  def close(self) -> None:
    """Releases what the engine holds (sessions, worker processes)."""


class MapReduceEngine(Engine):
  """The process's MapReduceForm, in this process (`fl_analytics.mrf_runner`)."""

  name = 'mapreduce'

  def __init__(self, process, dataset_fn, **unused):
    super().__init__(process, dataset_fn)
    from fl_analytics import mrf_runner  # pylint: disable=g-import-not-at-top

    self._runner = mrf_runner.MapReduceRunner(process, dataset_fn)

  def initialize(self):
    return self._runner.initialize()

  def next(self, state, clients):
    return self._runner.next(state, [(c.x, c.y, c.max_steps) for c in clients])

  def get_model_weights(self, state):
    return self._runner.get_model_weights(state)

  def set_model_weights(self, state, model_weights):
    return self._runner.set_model_weights(state, model_weights)

  @property
  def client_bytes(self):
    return self._runner.sent_bytes

  def close(self):
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

  def __init__(self, process, dataset_fn, *, config, **unused):
    Engine.__init__(self, process, dataset_fn)
    from fl_analytics import vectorized  # pylint: disable=g-import-not-at-top

    self._runner = vectorized.VectorizedRunner(
        process, dataset_fn, learning_rate=config.client.learning_rate,
        batch_size=config.client.batch_size, local_epochs=config.client.local_epochs,
        clip=None if config.dp.mechanism == 'none' else config.dp.clip)

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
  check_name(config.runtime.engine)
  _ENGINES[config.runtime.engine].check(config)


@contextlib.contextmanager
def build(name: str, process, dataset_fn: Callable, *, workdir: Optional[str] = None,
          max_concurrent_computation_calls: int = -1, config=None) -> Iterator[Engine]:
  """The engine `name` for `process`, closed when the block exits, however it exits."""
  check_name(name)
  engine = _ENGINES[name](process, dataset_fn, workdir=workdir,
                          max_concurrent_computation_calls=max_concurrent_computation_calls,
                          config=config)
  try:
    yield engine
  finally:
    engine.close()
